//! Limits against toll fraud on outbound calls: which destination numbers an account may call
//! (allowed prefixes, globally or per account) and how fast API-created calls go out (calls
//! per second per account; calls beyond it wait in `queued`, in order, as on Twilio).
//!
//! The policy is process-wide: the binary installs it once at start with [`configure`]; without
//! it every destination is allowed and each account places [`DEFAULT_CALLS_PER_SECOND`] calls
//! per second. Only phone numbers are checked against prefixes: `sip:` URIs and `client:` names
//! reach users of this server or hosts the app names, not the paid telephone network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use model::AccountSid;

use crate::trunk::Pacer;

/// API-created calls per second per account when the configuration says nothing.
pub const DEFAULT_CALLS_PER_SECOND: f64 = 10.0;

/// Twilio's error code for a destination the account may not call.
pub const NOT_AUTHORIZED_CODE: u32 = 21215;

/// Limits for one account, overriding the global ones field by field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountLimits {
    pub calls_per_second: Option<f64>,
    pub allowed_prefixes: Option<Vec<String>>,
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub calls_per_second: f64,
    /// `None` allows every number.
    pub allowed_prefixes: Option<Vec<String>>,
    pub accounts: HashMap<AccountSid, AccountLimits>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            calls_per_second: DEFAULT_CALLS_PER_SECOND,
            allowed_prefixes: None,
            accounts: HashMap::new(),
        }
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Account not authorized to call {destination}. Perhaps you need to enable some international permissions.")]
pub struct NotAuthorized {
    pub destination: String,
}

impl Policy {
    fn rate(&self, account: &AccountSid) -> f64 {
        self.accounts
            .get(account)
            .and_then(|a| a.calls_per_second)
            .unwrap_or(self.calls_per_second)
    }

    /// Whether `account` may call `to`. Numbers are compared without spaces, dashes or
    /// parentheses so `+1 (555) 010` cannot sneak past a `+1555` rule.
    pub fn check_destination(&self, account: &AccountSid, to: &str) -> Result<(), NotAuthorized> {
        if !is_number(to) {
            return Ok(());
        }
        let prefixes = self
            .accounts
            .get(account)
            .and_then(|a| a.allowed_prefixes.as_ref())
            .or(self.allowed_prefixes.as_ref());
        let Some(prefixes) = prefixes else {
            return Ok(());
        };
        let number: String = to
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        if prefixes.iter().any(|p| number.starts_with(p.as_str())) {
            Ok(())
        } else {
            Err(NotAuthorized {
                destination: to.to_owned(),
            })
        }
    }
}

/// A phone number as opposed to a URI or a client name: digits, maybe a leading `+`.
fn is_number(to: &str) -> bool {
    let lower = to.get(..7).map(str::to_ascii_lowercase).unwrap_or_default();
    !(lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("client:"))
}

struct State {
    policy: RwLock<Arc<Policy>>,
    pacers: Mutex<HashMap<AccountSid, Arc<Pacer>>>,
}

fn state() -> &'static State {
    static STATE: std::sync::OnceLock<State> = std::sync::OnceLock::new();
    STATE.get_or_init(|| State {
        policy: RwLock::new(Arc::new(Policy::default())),
        pacers: Mutex::default(),
    })
}

/// Installs the policy (at start).
pub fn configure(policy: Policy) {
    *state().policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
}

/// The policy in force.
pub fn policy() -> Arc<Policy> {
    state()
        .policy
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Whether `account` may call `to` under the policy in force.
pub fn check_destination(account: &AccountSid, to: &str) -> Result<(), NotAuthorized> {
    policy().check_destination(account, to)
}

/// When the account's next API-created call may go out; reserves that slot, so calls created
/// one after the other go out in that order.
pub fn reserve_slot(account: &AccountSid, now: Instant) -> Instant {
    let rate = policy().rate(account);
    let pacer = state()
        .pacers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(*account)
        .or_default()
        .clone();
    pacer.reserve(now, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_global_and_per_account() {
        let (a, b) = (AccountSid::generate(), AccountSid::generate());
        let mut policy = Policy {
            allowed_prefixes: Some(vec!["+1".into(), "+44".into()]),
            ..Policy::default()
        };
        policy.accounts.insert(
            b,
            AccountLimits {
                allowed_prefixes: Some(vec!["+4420".into()]),
                calls_per_second: Some(2.0),
            },
        );
        assert!(policy.check_destination(&a, "+15551230000").is_ok());
        assert!(policy.check_destination(&a, "+447700900000").is_ok());
        let err = policy.check_destination(&a, "+88212345").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Account not authorized to call +88212345. Perhaps you need to enable some international permissions."
        );
        assert!(policy.check_destination(&b, "+15551230000").is_err());
        assert!(policy.check_destination(&b, "+44 20 7946 0000").is_ok());
        // URIs and clients are not phone numbers.
        assert!(policy.check_destination(&a, "sip:bob@example.com").is_ok());
        assert!(policy.check_destination(&a, "client:alice").is_ok());
        assert!(Policy::default().check_destination(&a, "+88212345").is_ok());
        assert_eq!(
            (policy.rate(&a), policy.rate(&b)),
            (DEFAULT_CALLS_PER_SECOND, 2.0)
        );
    }

    #[test]
    fn each_account_is_paced_on_its_own() {
        let (a, b) = (AccountSid::generate(), AccountSid::generate());
        let now = Instant::now();
        let first = reserve_slot(&a, now);
        let second = reserve_slot(&a, now);
        assert_eq!(first, now);
        assert!(second > now, "the second call of a burst waits");
        assert_eq!(reserve_slot(&b, now), now);
    }
}
