//! The one error the decision core returns: its state store failed.

/// A failure of the state store. These are *external* errors: the engine
/// cannot make progress without its state, so the caller should stop the
/// batch, back off and retry (or exit and let the supervisor restart it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed (I/O, corruption, full disk).
    #[error("state store backend failed: {0}; check disk space and the store's log, then restart")]
    Backend(String),
    /// A stored record could not be decoded: the store holds data written by
    /// an incompatible version.
    #[error("stored {what} is unreadable ({detail}); the state was written by an incompatible version: restore it from Kafka or a snapshot")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
}
