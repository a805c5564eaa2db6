//! tx
