"""Object stores: the ObjectStore protocol (`base`), a folder-backed store (`local`) and S3 (`s3`)."""
