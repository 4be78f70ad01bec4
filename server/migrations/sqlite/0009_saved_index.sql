-- The uploads whose index is still saved: the open ones, and those closed since the last sweep,
-- which clears them (`db::uploads::drop_closed_indexes`). The sweeper asks for these at every
-- pass; without this index that is a scan of every upload ever made.
CREATE INDEX uploads_saved_index ON uploads (id) WHERE index_state IS NOT NULL;
