-- The node writing an upload: a random name each server process draws at start. A PATCH whose
-- node is not the upload's writer claims it before storing anything, and a PATCH commits its
-- offset only while its node is still the writer (uploads/tus.rs). So a node that finds itself
-- the writer knows that no other node stored a piece of the upload since its own last one, and
-- a PATCH whose lock went with its database session cannot commit over another node's.
ALTER TABLE uploads ADD COLUMN writer TEXT;
