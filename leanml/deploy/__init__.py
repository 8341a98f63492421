"""Deploy: turn an integer model into a self-contained C inference engine (TinyEngine-style, int8, NHWC)."""
