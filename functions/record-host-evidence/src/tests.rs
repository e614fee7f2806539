//! Unit tests of the evidence recorder against mocked S3 and DynamoDB.
