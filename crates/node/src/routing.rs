//! The in-memory index from dialled number to IncomingPhoneNumber, kept fresh by API writes.
//!
//! An INVITE must not wait on the database in the common case. The index is reloaded whole when
//! the API says numbers changed; a miss still asks the store, so a number created a moment ago
//! routes before the reload lands.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use model::records::PhoneNumberRecord;

#[derive(Default, Clone)]
pub struct Routing {
    index: Arc<RwLock<HashMap<String, PhoneNumberRecord>>>,
}

/// The forms a dialled number may arrive in: as written, with or without the leading `+`.
fn candidates(dialled: &str) -> [String; 2] {
    match dialled.strip_prefix('+') {
        Some(bare) => [dialled.to_owned(), bare.to_owned()],
        None => [dialled.to_owned(), format!("+{dialled}")],
    }
}

impl Routing {
    pub async fn reload(&self, store: &store::Store) -> Result<(), store::StoreError> {
        let numbers = store.all_numbers().await?;
        let map = numbers.into_iter().map(|n| (n.phone_number.clone(), n)).collect();
        // A poisoned lock only means a reader panicked mid-read; the map itself is whole.
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    pub async fn lookup(&self, store: &store::Store, dialled: &str) -> Option<PhoneNumberRecord> {
        let keys = candidates(dialled);
        {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = keys.iter().find_map(|k| index.get(k)) {
                return Some(hit.clone());
            }
        }
        for key in &keys {
            match store.number_by_phone(key).await {
                Ok(Some(n)) => return Some(n),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "number lookup failed"),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_of_a_number_are_tried() {
        assert_eq!(candidates("+15551234567"), ["+15551234567".to_owned(), "15551234567".to_owned()]);
        assert_eq!(candidates("15551234567"), ["15551234567".to_owned(), "+15551234567".to_owned()]);
    }
}
