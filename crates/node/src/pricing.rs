//! What a call costs when it ends and a message once sent, from the node's rate table
//! (`[pricing]`, the `billing` crate): calls are billed from answer to hang-up, so ringing and
//! unanswered calls cost nothing; messages per segment.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use billing::{Decimal, Direction, NumberType, RateSheet, RateTable};
use model::{AccountSid, CallDirection, CallRecord, MessageDirection, MessageRecord};

/// Which rate table prices an account: its own (set through the API), else its parent's, else
/// the node's `[pricing]`. Resolved tables are cached per account; any change through the API
/// empties the cache (`ApiHooks::rates_changed`), and a lookup that raced a change does not
/// store what it read.
#[derive(Default)]
pub struct Rates {
    node: Option<Arc<RateTable>>,
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    /// Bumped by every change; a lookup stores its result only under the generation it began in.
    generation: u64,
    tables: HashMap<AccountSid, Option<Arc<RateTable>>>,
}

impl Rates {
    pub fn new(node: Option<Arc<RateTable>>) -> Rates {
        Rates { node, cache: RwLock::default() }
    }

    /// The table that prices `account` now (`None`: nothing prices it).
    pub async fn for_account(&self, store: &store::Store, account: &AccountSid) -> Option<Arc<RateTable>> {
        let generation = {
            // A poisoned lock only means a reader panicked mid-read; the map itself is whole.
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.tables.get(account) {
                return hit.clone().or_else(|| self.node.clone());
            }
            cache.generation
        };
        let own = match store.effective_rate_table(account).await {
            Ok(Some(record)) => match serde_json::from_str::<RateSheet>(&record.rates).map_err(|e| e.to_string()).and_then(|s| s.table().map_err(|e| e.to_string())) {
                Ok(table) => Some(Arc::new(table)),
                Err(e) => {
                    tracing::error!(account = %account, table_of = %record.account_sid, error = %e, "stored rate table unreadable; the node's rates apply");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!(account = %account, error = %e, "reading the rate table failed; the node's rates apply");
                return self.node.clone();
            }
        };
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.generation == generation {
            cache.tables.insert(*account, own.clone());
        }
        own.or_else(|| self.node.clone())
    }

    /// A table was set or removed: every cached resolution may be stale.
    pub fn changed(&self) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.generation += 1;
        cache.tables.clear();
    }
}

/// The price of a call that was answered for `answered` (`None`: never answered), as Twilio
/// shows it: the charge as a negative decimal string (`"-0.1000"`; `"0.0000"` when free).
/// `None` without a rate table or a rate for the call: the price stays unknown (null).
pub fn call_price(table: Option<&RateTable>, call: &CallRecord, answered: Option<Duration>) -> Option<String> {
    let table = table?;
    let direction = match call.direction {
        CallDirection::Inbound => Direction::Inbound(number_type(&call.to)),
        CallDirection::OutboundApi | CallDirection::OutboundDial => Direction::Outbound(&call.to),
    };
    let price = table.call_price(direction, billing::billable_seconds(answered))?;
    Some(twilio_price(price))
}

/// The price of a message per segment: an outbound one (once sent) by its destination, an
/// inbound one (once received) at the inbound rate; `None` without a rate table or a rate.
pub fn message_price(table: Option<&RateTable>, message: &MessageRecord) -> Option<String> {
    let direction = match message.direction {
        MessageDirection::Inbound => Direction::Inbound(number_type(&message.to)),
        _ => Direction::Outbound(&message.to),
    };
    let price = table?.sms_price(direction, message.num_segments)?;
    Some(twilio_price(price))
}

/// A charge as Twilio shows it on a Call or Message: negative, four places.
pub fn twilio_price(charge: Decimal) -> String {
    if charge.is_zero() {
        return format!("{:.4}", Decimal::ZERO);
    }
    format!("{:.4}", -charge)
}

/// The type of one of our numbers, for inbound rates: North American toll-free codes (800, 833,
/// 844, 855, 866, 877, 888) are toll-free, the rest local (a number's type is not stored yet).
pub fn number_type(number: &str) -> NumberType {
    const TOLL_FREE: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];
    let digits = number.strip_prefix('+').unwrap_or(number);
    match digits.strip_prefix('1') {
        Some(rest) if digits.len() == 11 && TOLL_FREE.iter().any(|code| rest.starts_with(code)) => {
            NumberType::TollFree
        }
        _ => NumberType::Local,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;
    use model::{AccountSid, CallSid, CallStatus};

    use super::*;

    fn call(direction: CallDirection, to: &str) -> CallRecord {
        let now = Utc::now();
        CallRecord {
            sid: CallSid::generate(),
            account_sid: AccountSid::generate(),
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+15550001111".into(),
            to: to.into(),
            status: CallStatus::Completed,
            direction,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        }
    }

    fn table() -> RateTable {
        RateTable {
            inbound: HashMap::from([(NumberType::Local, "0.01".parse().unwrap())]),
            outbound: billing::PrefixRates::new([("+1555", "0.05")]).unwrap(),
            ..RateTable::default()
        }
    }

    #[test]
    fn calls_are_priced_from_answer_as_twilio_shows_it() {
        let t = table();
        let out = call(CallDirection::OutboundApi, "+15550002222");
        assert_eq!(call_price(Some(&t), &out, Some(Duration::from_secs(65))).as_deref(), Some("-0.1000"));
        assert_eq!(call_price(Some(&t), &out, None).as_deref(), Some("0.0000"), "unanswered: free");
        let dialled = call(CallDirection::OutboundDial, "+15550002222");
        assert_eq!(call_price(Some(&t), &dialled, Some(Duration::from_millis(500))).as_deref(), Some("-0.0500"));
        assert_eq!(call_price(Some(&t), &dialled, Some(Duration::from_millis(400))).as_deref(), Some("0.0000"), "0 s");
        let inbound = call(CallDirection::Inbound, "+12125550000");
        assert_eq!(call_price(Some(&t), &inbound, Some(Duration::from_secs(90))).as_deref(), Some("-0.0200"));
        assert_eq!(call_price(Some(&t), &call(CallDirection::OutboundApi, "+4420"), Some(Duration::from_secs(9))), None);
        assert_eq!(call_price(None, &out, Some(Duration::from_secs(65))), None);
    }

    #[test]
    fn messages_are_priced_per_segment_by_destination() {
        let t = RateTable {
            sms_outbound: billing::PrefixRates::new([("+1", "0.0079")]).unwrap(),
            ..RateTable::default()
        };
        let mut m = MessageRecord::new(
            AccountSid::generate(),
            "+15550001111".into(),
            "+15550002222".into(),
            "hi".into(),
            model::MessageStatus::Queued,
            MessageDirection::OutboundApi,
            3,
            Utc::now(),
        );
        assert_eq!(message_price(Some(&t), &m).as_deref(), Some("-0.0237"));
        m.to = "+33612345678".into();
        assert_eq!(message_price(Some(&t), &m), None, "no rate: unpriced");
        m.direction = MessageDirection::Inbound;
        assert_eq!(message_price(Some(&t), &m), None, "no inbound rate");
        let t = RateTable { sms_inbound: Some("0.0075".parse().unwrap()), ..t };
        assert_eq!(message_price(Some(&t), &m).as_deref(), Some("-0.0225"));
        assert_eq!(message_price(None, &m), None);
    }

    #[test]
    fn toll_free_numbers_are_told_apart() {
        assert_eq!(number_type("+18005550000"), NumberType::TollFree);
        assert_eq!(number_type("18885550000"), NumberType::TollFree);
        assert_eq!(number_type("+12125550000"), NumberType::Local);
        assert_eq!(number_type("+448001234567"), NumberType::Local);
        assert_eq!(number_type("client:alice"), NumberType::Local);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_account_is_priced_by_its_own_table_else_its_parents_else_the_nodes() {
        let store = store::Store::open("sqlite::memory:").await.unwrap();
        let account = AccountSid::generate();
        store.ensure_account(&account, "token", "test").await.unwrap();
        let node = Arc::new(RateTable { rounding: billing::Rounding::PerSecond, ..RateTable::default() });
        let rates = Rates::new(Some(node.clone()));
        assert_eq!(rates.for_account(&store, &account).await, Some(node.clone()));
        store.set_rate_table(&account, r#"{"outbound":{"+1":"0.05"}}"#, Utc::now()).await.unwrap();
        // Cached until the API says rates changed.
        assert_eq!(rates.for_account(&store, &account).await, Some(node.clone()));
        rates.changed();
        let own = rates.for_account(&store, &account).await.unwrap();
        assert_eq!(own.outbound.rate("+15550001234"), Some("0.05".parse().unwrap()));
        assert_eq!(own.rounding, billing::Rounding::PerMinute);
        // A table the store cannot read falls back to the node's rather than failing the call.
        store.set_rate_table(&account, "not json", Utc::now()).await.unwrap();
        rates.changed();
        assert_eq!(rates.for_account(&store, &account).await, Some(node));
        assert_eq!(Rates::default().for_account(&store, &AccountSid::generate()).await, None);
    }
}
