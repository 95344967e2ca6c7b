"""Offline training for the CIFAR-10 service: read data, train, export, evaluate."""
