"""Deploy: turn an integer model into a self-contained C inference engine (TinyEngine-style, int8, NHWC).

Example:
    >>> from leanml.deploy import DeployConfig
    >>> DeployConfig(patch=3).patch
    3
"""

from leanml.deploy.engine import DeployConfig, Deployment, VerifyResult, deploy, export_project, verify

__all__ = ["DeployConfig", "Deployment", "VerifyResult", "deploy", "export_project", "verify"]
