//! dialogs
