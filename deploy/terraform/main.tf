# For reference only: not applied by fraudctl or its tests (see deploy/README.md).
# The platform's stateful infrastructure: buckets (offline store snapshots, drift reports,
# prediction logs; MLflow artifacts), Redis (Feast online store) and MLflow's PostgreSQL.

locals {
  name = "fraudctl-${var.environment}"
}

# --- S3: offline store and MLflow artifacts ------------------------------------------

resource "aws_s3_bucket" "data" {
  bucket = "${local.name}-data"
}

resource "aws_s3_bucket" "mlflow_artifacts" {
  bucket = "${local.name}-mlflow-artifacts"
}

locals {
  buckets = {
    data             = aws_s3_bucket.data.id
    mlflow_artifacts = aws_s3_bucket.mlflow_artifacts.id
  }
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = local.buckets
  bucket = each.value
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = local.buckets
  bucket = each.value
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each = local.buckets
  bucket                  = each.value
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    id     = "expire-prediction-logs"
    status = "Enabled"
    filter {
      prefix = "predictions/"
    }
    expiration {
      days = 90
    }
  }
}

# --- Redis: the online store ---------------------------------------------------------

resource "random_password" "redis" {
  length  = 32
  special = false
}

resource "aws_security_group" "data" {
  name   = "${local.name}-data"
  vpc_id = var.vpc_id

  ingress {
    description     = "Redis from the pods"
    from_port       = 6379
    to_port         = 6379
    protocol        = "tcp"
    security_groups = [var.client_security_group_id]
  }

  ingress {
    description     = "PostgreSQL from MLflow"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [var.client_security_group_id]
  }
}

resource "aws_elasticache_subnet_group" "redis" {
  name       = "${local.name}-redis"
  subnet_ids = var.private_subnet_ids
}

resource "aws_elasticache_replication_group" "online_store" {
  replication_group_id       = "${local.name}-online"
  description                = "fraudctl online store (Feast, Redis)"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  subnet_group_name          = aws_elasticache_subnet_group.redis.name
  security_group_ids         = [aws_security_group.data.id]
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  auth_token                 = random_password.redis.result
}

# --- PostgreSQL: MLflow's backend store ----------------------------------------------

resource "random_password" "mlflow_db" {
  length  = 32
  special = false
}

resource "aws_db_subnet_group" "mlflow" {
  name       = "${local.name}-mlflow"
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_instance" "mlflow" {
  identifier                = "${local.name}-mlflow"
  engine                    = "postgres"
  engine_version            = "16"
  instance_class            = var.mlflow_db_instance_class
  allocated_storage         = 20
  db_name                   = "mlflow"
  username                  = "mlflow"
  password                  = random_password.mlflow_db.result
  db_subnet_group_name      = aws_db_subnet_group.mlflow.name
  vpc_security_group_ids    = [aws_security_group.data.id]
  storage_encrypted         = true
  backup_retention_period   = 7
  deletion_protection       = var.environment == "production"
  skip_final_snapshot       = var.environment != "production"
  final_snapshot_identifier = "${local.name}-mlflow-final"
}

# --- Generated secrets, for External Secrets to turn into fraudctl-secrets -------------

resource "aws_secretsmanager_secret" "fraudctl" {
  name = "${local.name}/fraudctl"
}

resource "aws_secretsmanager_secret_version" "fraudctl" {
  secret_id = aws_secretsmanager_secret.fraudctl.id
  secret_string = jsonencode({
    FRAUDCTL_REDIS_PASSWORD = random_password.redis.result
    MLFLOW_DB_PASSWORD      = random_password.mlflow_db.result
  })
}
