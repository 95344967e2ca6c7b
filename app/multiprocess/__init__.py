"""The multi-process design (`cifar10-serve --workers N`): a supervisor, one model
process that holds the model and its batch queues, and N HTTP front processes that
feed it over a Unix socket (docs/serving.md)."""
