"""Sources: turn upstream FNOL reports into tokenised Avro records on Kafka."""
