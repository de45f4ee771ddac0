-- In-flight validations claimed with a lease (issue 14): the instance validating a challenge
-- holds it until this time; another instance (or start-up recovery) takes the validation over
-- only once the lease expired, never from a live instance.
ALTER TABLE challenges ADD COLUMN validation_lease BIGINT;
