//! Entity ids for the numeric keys stored in rows (click and conversion
//! rows carry keys; the API and CLI show ids).

use std::collections::HashMap;

use smartlink_store::{Kind, Store, StoreError};

/// Numeric key → id, for every entity ever stored (deleted ones too).
pub struct Names(HashMap<(Kind, u32), String>);

impl Names {
    pub fn load(store: &dyn Store) -> Result<Names, StoreError> {
        Ok(Names::from_keys(store.keys()?))
    }

    pub fn from_keys(keys: Vec<(Kind, String, u32)>) -> Names {
        Names(keys.into_iter().map(|(k, id, key)| ((k, key), id)).collect())
    }

    /// The id of a key; `#KEY` for one never stored.
    pub fn get(&self, kind: Kind, key: u32) -> String {
        self.0.get(&(kind, key)).cloned().unwrap_or_else(|| format!("#{key}"))
    }
}
