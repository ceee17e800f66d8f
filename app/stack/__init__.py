"""The local stack: Redis, Kafka (KRaft), a Ray head and MLflow on loopback."""
