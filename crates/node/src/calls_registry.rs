//! Live calls by CallSid, so the REST API can reach the task that holds a call (redirect it,
//! end it). Inbound and outbound calls register the same way; the entry goes when the call's
//! task drops its [`Registration`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::{AccountSid, CallSid, CallStatus};
use tokio::sync::mpsc;

/// What the API asks of a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallControl {
    /// Run the document at this URL (method `GET` or `POST`) instead of the current one.
    Redirect { url: String, method: engine::HttpMethod },
    /// Run this document instead of the current one.
    Twiml(String),
    /// End the call: `Canceled` only ends a call that is not answered yet, `Completed` any.
    End(CallStatus),
}

type Map = HashMap<CallSid, (AccountSid, mpsc::UnboundedSender<CallControl>)>;

#[derive(Default, Clone)]
pub struct CallRegistry {
    calls: Arc<Mutex<Map>>,
}

/// Keeps a call in the registry while it lives.
pub struct Registration {
    calls: Arc<Mutex<Map>>,
    sid: CallSid,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.calls).remove(&self.sid);
    }
}

// A poisoned lock only means another thread panicked while holding it; the map is still whole.
fn lock(m: &Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CallRegistry {
    pub fn register(&self, account: AccountSid, sid: CallSid) -> (Registration, mpsc::UnboundedReceiver<CallControl>) {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.calls).insert(sid, (account, tx));
        (Registration { calls: self.calls.clone(), sid }, rx)
    }

    /// Hands `control` to the call if it is live and belongs to `account`.
    pub fn send(&self, account: &AccountSid, sid: &CallSid, control: CallControl) -> bool {
        match lock(&self.calls).get(sid) {
            Some((owner, tx)) if owner == account => tx.send(control).is_ok(),
            _ => false,
        }
    }

    pub fn is_live(&self, account: &AccountSid, sid: &CallSid) -> bool {
        lock(&self.calls).get(sid).is_some_and(|(owner, tx)| owner == account && !tx.is_closed())
    }

    pub fn len(&self) -> usize {
        lock(&self.calls).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_reached_only_by_their_account_and_only_while_registered() {
        let registry = CallRegistry::default();
        let (account, other, sid) = (AccountSid::generate(), AccountSid::generate(), CallSid::generate());
        let (guard, mut rx) = registry.register(account, sid);
        assert!(!registry.send(&other, &sid, CallControl::End(CallStatus::Completed)));
        assert!(registry.send(&account, &sid, CallControl::Twiml("<Response/>".into())));
        assert_eq!(rx.try_recv().unwrap(), CallControl::Twiml("<Response/>".into()));
        assert!(rx.try_recv().is_err());
        drop(guard);
        assert!(registry.is_empty());
        assert!(!registry.send(&account, &sid, CallControl::End(CallStatus::Completed)));
    }
}
