# For reference only: not applied by fraudctl or its tests (see deploy/README.md).
output "data_bucket" {
  value       = aws_s3_bucket.data.bucket
  description = "FRAUDCTL_S3_BUCKET"
}

output "mlflow_artifacts_bucket" {
  value       = aws_s3_bucket.mlflow_artifacts.bucket
  description = "mlflow server --artifacts-destination s3://<this>/"
}

output "redis_endpoint" {
  value       = aws_elasticache_replication_group.online_store.primary_endpoint_address
  description = "Host of FRAUDCTL_REDIS_URL (rediss://, TLS)"
}

output "mlflow_db_endpoint" {
  value       = aws_db_instance.mlflow.endpoint
  description = "Host:port of MLflow's --backend-store-uri"
}

output "secrets_manager_secret" {
  value       = aws_secretsmanager_secret.fraudctl.name
  description = "Where the generated passwords are"
}
