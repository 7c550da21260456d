//! containers/storage, read side.
