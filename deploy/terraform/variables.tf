# For reference only: not applied by fraudctl or its tests (see deploy/README.md).
# No credential is a variable: passwords are generated (random_password) and stored in
# Secrets Manager; the provider takes AWS credentials from its usual environment.
variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region."
}

variable "environment" {
  type        = string
  description = "staging or production."
  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC the Redis and PostgreSQL instances live in."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets for ElastiCache and RDS."
}

variable "client_security_group_id" {
  type        = string
  description = "Security group of the pods (serving, materializer, MLflow) allowed in."
}

variable "redis_node_type" {
  type        = string
  default     = "cache.t4g.medium"
  description = "ElastiCache node type for the online store."
}

variable "mlflow_db_instance_class" {
  type        = string
  default     = "db.t4g.small"
  description = "RDS instance class for MLflow's backend store."
}
