"""The S3 API on api.listen: local folders served as S3 buckets (docs/s3.md)."""
