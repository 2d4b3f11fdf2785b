"""The streaming runtime: broker, topics, Kafka clients, run table, worker loops and CLI."""
