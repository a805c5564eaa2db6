//! Live calls by CallSid, so the REST API can reach the task that holds a call (redirect it,
//! end it), and so presence can tell whether an agent is in a call. Inbound, outbound and
//! `<Dial>` child calls register the same way; the entry goes when the call's task drops its
//! [`Registration`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::{AccountSid, CallSid, CallStatus};
use tokio::sync::mpsc;

/// What the API asks of a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallControl {
    /// Run the document at this URL (method `GET` or `POST`) instead of the current one.
    Redirect {
        url: String,
        method: engine::HttpMethod,
    },
    /// Run this document instead of the current one.
    Twiml(String),
    /// End the call: `Canceled` only ends a call that is not answered yet, `Completed` any.
    End(CallStatus),
}

struct Entry {
    account: AccountSid,
    control: mpsc::UnboundedSender<CallControl>,
    /// The call's `from` and `to` as its record shows them (`client:alice` for agents).
    parties: [String; 2],
}

type Map = HashMap<CallSid, Entry>;

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
    /// Registers a call whose parties do not matter to presence.
    pub fn register(
        &self,
        account: AccountSid,
        sid: CallSid,
    ) -> (Registration, mpsc::UnboundedReceiver<CallControl>) {
        self.register_parties(account, sid, String::new(), String::new())
    }

    /// Registers a call with its `from` and `to` as the call record has them.
    pub fn register_parties(
        &self,
        account: AccountSid,
        sid: CallSid,
        from: String,
        to: String,
    ) -> (Registration, mpsc::UnboundedReceiver<CallControl>) {
        let (control, rx) = mpsc::unbounded_channel();
        lock(&self.calls).insert(
            sid,
            Entry {
                account,
                control,
                parties: [from, to],
            },
        );
        (
            Registration {
                calls: self.calls.clone(),
                sid,
            },
            rx,
        )
    }

    /// Hands `control` to the call if it is live and belongs to `account`.
    pub fn send(&self, account: &AccountSid, sid: &CallSid, control: CallControl) -> bool {
        match lock(&self.calls).get(sid) {
            Some(e) if e.account == *account => e.control.send(control).is_ok(),
            _ => false,
        }
    }

    pub fn is_live(&self, account: &AccountSid, sid: &CallSid) -> bool {
        lock(&self.calls)
            .get(sid)
            .is_some_and(|e| e.account == *account && !e.control.is_closed())
    }

    /// Whether a live call of `account` is from or to `party` (e.g. `client:alice`), compared
    /// without regard to case.
    pub fn has_party(&self, account: &AccountSid, party: &str) -> bool {
        lock(&self.calls).values().any(|e| {
            e.account == *account
                && e.parties
                    .iter()
                    .any(|p| !p.is_empty() && p.eq_ignore_ascii_case(party))
        })
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
        let (account, other, sid) = (
            AccountSid::generate(),
            AccountSid::generate(),
            CallSid::generate(),
        );
        let (guard, mut rx) = registry.register(account, sid);
        assert!(!registry.send(&other, &sid, CallControl::End(CallStatus::Completed)));
        assert!(registry.send(&account, &sid, CallControl::Twiml("<Response/>".into())));
        assert_eq!(
            rx.try_recv().unwrap(),
            CallControl::Twiml("<Response/>".into())
        );
        assert!(rx.try_recv().is_err());
        drop(guard);
        assert!(registry.is_empty());
        assert!(!registry.send(&account, &sid, CallControl::End(CallStatus::Completed)));
    }

    #[test]
    fn parties_tell_who_is_in_a_call() {
        let registry = CallRegistry::default();
        let (account, other) = (AccountSid::generate(), AccountSid::generate());
        let (_plain, _) = registry.register(account, CallSid::generate());
        assert!(!registry.has_party(&account, ""));
        let (guard, _rx) = registry.register_parties(
            account,
            CallSid::generate(),
            "+15550001111".into(),
            "client:alice".into(),
        );
        assert!(registry.has_party(&account, "client:alice"));
        assert!(registry.has_party(&account, "Client:Alice"));
        assert!(registry.has_party(&account, "+15550001111"));
        assert!(!registry.has_party(&account, "client:bob"));
        assert!(!registry.has_party(&other, "client:alice"));
        drop(guard);
        assert!(!registry.has_party(&account, "client:alice"));
    }
}
