"""SQS source: Lambda's SQS event source mapping on an embedded queue or any SQS endpoint."""
