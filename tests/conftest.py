"""Shared pytest fixtures."""

from kafka_broker import kafka_bootstrap, kafka_topic_factory

__all__ = ["kafka_bootstrap", "kafka_topic_factory"]
