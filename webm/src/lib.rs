//! Streaming finalizer for MediaRecorder WebM files.
