//! Rewards (SPEC §7.1) and the tiers of a reward rule (§7.2, §7.7): what a reward is, how a rule's tiers
//! are validated, and which tier a final rank falls in. Pure: settlement, grants and their ledger are
//! the store's, built on this.
//!
//! `top_percent` is exact: it is kept in hundredths of a percent, and the ranks it covers are
//! ⌈hundredths × ranked / 10 000⌉ in integer arithmetic (10% of 30 ranked entries is 3 ranks).

use crate::error::ValidationError;
use serde_json::{Map, Value, json};

/// Tiers a rule may have.
pub const MAX_TIERS: usize = 50;
/// Rewards a tier may hold.
pub const MAX_REWARDS_PER_TIER: usize = 10;
/// The largest serialized `data` of a `custom` reward.
pub const MAX_CUSTOM_BYTES: usize = 4096;
/// The largest `amount` or `quantity`: the largest integer every JSON client reads exactly (2^53 - 1).
pub const MAX_COUNT: u64 = (1 << 53) - 1;

/// One reward (SPEC §7.1).
#[derive(Debug, Clone, PartialEq)]
pub enum Reward {
    Currency {
        currency: String,
        amount: u64,
    },
    Item {
        item: String,
        quantity: u64,
    },
    Badge {
        badge: String,
    },
    /// Hands the player a new personal code of the campaign.
    Coupon {
        campaign_id: String,
    },
    /// Opaque to Phoenix.
    Custom {
        data: Value,
    },
}

const TYPES: &str = "currency, item, badge, coupon, custom";

/// `^[A-Za-z0-9_.:-]{1,64}$`: currency, item and badge names.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// `^[A-Za-z0-9_-]{1,64}$`: ids chosen by clients (rules, campaigns, achievements).
pub fn is_client_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The members of `value` as an object, refusing members not in `allowed`.
fn object<'a>(
    value: &'a Value,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, ValidationError> {
    let map = value
        .as_object()
        .ok_or_else(|| ValidationError::new("expected an object"))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ValidationError::field(unknown, "unknown field"));
    }
    Ok(map)
}

fn required<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a Value, ValidationError> {
    map.get(field)
        .ok_or_else(|| ValidationError::field(field, "is required"))
}

fn name(map: &Map<String, Value>, field: &str) -> Result<String, ValidationError> {
    match required(map, field)?.as_str() {
        Some(s) if is_name(s) => Ok(s.to_owned()),
        Some(_) => Err(ValidationError::field(
            field,
            "must match ^[A-Za-z0-9_.:-]{1,64}$",
        )),
        None => Err(ValidationError::field(field, "expected a string")),
    }
}

fn count(map: &Map<String, Value>, field: &str) -> Result<u64, ValidationError> {
    match required(map, field)?.as_u64() {
        Some(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(ValidationError::field(
            field,
            format!("expected a positive integer (at most {MAX_COUNT})"),
        )),
    }
}

impl Reward {
    /// Parses one reward; error paths are relative to it (`amount`, `type`).
    pub fn from_json(value: &Value) -> Result<Reward, ValidationError> {
        let kind = value
            .as_object()
            .ok_or_else(|| ValidationError::new("expected an object"))?
            .get("type")
            .ok_or_else(|| ValidationError::field("type", "is required"))?;
        let kind = kind
            .as_str()
            .ok_or_else(|| ValidationError::field("type", "expected a string"))?;
        match kind {
            "currency" => {
                let map = object(value, &["type", "currency", "amount"])?;
                Ok(Reward::Currency {
                    currency: name(map, "currency")?,
                    amount: count(map, "amount")?,
                })
            }
            "item" => {
                let map = object(value, &["type", "item", "quantity"])?;
                Ok(Reward::Item {
                    item: name(map, "item")?,
                    quantity: count(map, "quantity")?,
                })
            }
            "badge" => {
                let map = object(value, &["type", "badge"])?;
                Ok(Reward::Badge {
                    badge: name(map, "badge")?,
                })
            }
            "coupon" => {
                let map = object(value, &["type", "campaign_id"])?;
                match required(map, "campaign_id")?.as_str() {
                    Some(id) if is_client_id(id) => Ok(Reward::Coupon {
                        campaign_id: id.to_owned(),
                    }),
                    Some(_) => Err(ValidationError::field(
                        "campaign_id",
                        "must match ^[A-Za-z0-9_-]{1,64}$",
                    )),
                    None => Err(ValidationError::field("campaign_id", "expected a string")),
                }
            }
            "custom" => {
                let map = object(value, &["type", "data"])?;
                let data = required(map, "data")?;
                if !data.is_object() {
                    return Err(ValidationError::field("data", "expected an object"));
                }
                let size = serde_json::to_vec(data).map_or(usize::MAX, |b| b.len());
                if size > MAX_CUSTOM_BYTES {
                    return Err(ValidationError::field(
                        "data",
                        format!("is {size} bytes as JSON; at most {MAX_CUSTOM_BYTES}"),
                    ));
                }
                Ok(Reward::Custom { data: data.clone() })
            }
            other => Err(ValidationError::field(
                "type",
                format!("unknown reward type '{other}'; expected one of {TYPES}"),
            )),
        }
    }

    /// The reward as the API shows it.
    pub fn to_json(&self) -> Value {
        match self {
            Reward::Currency { currency, amount } => {
                json!({"type": "currency", "currency": currency, "amount": amount})
            }
            Reward::Item { item, quantity } => {
                json!({"type": "item", "item": item, "quantity": quantity})
            }
            Reward::Badge { badge } => json!({"type": "badge", "badge": badge}),
            Reward::Coupon { campaign_id } => json!({"type": "coupon", "campaign_id": campaign_id}),
            Reward::Custom { data } => json!({"type": "custom", "data": data}),
        }
    }
}

/// Which final ranks a tier covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierRanks {
    /// `rank_from ..= rank_to`, 1-based.
    Range { from: u32, to: u32 },
    /// The first ⌈p% × ranked entries⌉ ranks; `p` in hundredths of a percent (1 ..= 10 000).
    TopPercent { hundredths: u32 },
}

/// One tier of a reward rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub ranks: TierRanks,
    pub rewards: Vec<Reward>,
}

/// How many ranks `hundredths` of a percent of `ranked` entries covers, rounded up, exactly.
pub fn top_percent_ranks(hundredths: u32, ranked: u32) -> u32 {
    let covered = (u64::from(hundredths) * u64::from(ranked)).div_ceil(10_000);
    covered.min(u64::from(ranked)) as u32
}

/// `p` as hundredths of a percent, when it has at most two decimals and 0 < p ≤ 100.
fn hundredths(p: &Value) -> Option<u32> {
    let p = p.as_f64()?;
    if !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let scaled = p * 100.0;
    let rounded = scaled.round();
    ((scaled - rounded).abs() < 1e-6 && rounded >= 1.0).then_some(rounded as u32)
}

impl Tier {
    /// Parses one tier; error paths are relative to it (`rank_to`, `rewards[0].amount`).
    pub fn from_json(value: &Value) -> Result<Tier, ValidationError> {
        let map = object(value, &["rank_from", "rank_to", "top_percent", "rewards"])?;
        let rank = |field: &str| -> Result<Option<u32>, ValidationError> {
            match map.get(field) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
                    _ => Err(ValidationError::field(field, "expected an integer >= 1")),
                },
            }
        };
        let ranks = match (rank("rank_from")?, rank("rank_to")?, map.get("top_percent")) {
            (Some(from), Some(to), None) if to >= from => TierRanks::Range { from, to },
            (Some(_), Some(_), None) => {
                return Err(ValidationError::field("rank_to", "must be >= rank_from"));
            }
            (None, None, Some(p)) => TierRanks::TopPercent {
                hundredths: hundredths(p).ok_or_else(|| {
                    ValidationError::field(
                        "top_percent",
                        "expected a number above 0 and at most 100, with at most two decimals",
                    )
                })?,
            },
            (None, None, None) => {
                return Err(ValidationError::new(
                    "a tier needs rank_from and rank_to, or top_percent",
                ));
            }
            (Some(_), None, None) => {
                return Err(ValidationError::field(
                    "rank_to",
                    "is required with rank_from",
                ));
            }
            (None, Some(_), None) => {
                return Err(ValidationError::field(
                    "rank_from",
                    "is required with rank_to",
                ));
            }
            (_, _, Some(_)) => {
                return Err(ValidationError::field(
                    "top_percent",
                    "cannot be combined with rank_from or rank_to",
                ));
            }
        };
        let rewards = required(map, "rewards")?
            .as_array()
            .ok_or_else(|| ValidationError::field("rewards", "expected an array"))?;
        if !(1..=MAX_REWARDS_PER_TIER).contains(&rewards.len()) {
            return Err(ValidationError::field(
                "rewards",
                format!("expected 1 to {MAX_REWARDS_PER_TIER} rewards"),
            ));
        }
        let rewards = rewards
            .iter()
            .enumerate()
            .map(|(i, r)| Reward::from_json(r).map_err(|e| e.at_index(i).within("rewards")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tier { ranks, rewards })
    }

    /// Whether final rank `rank` (1-based) of a window with `ranked` ranked entries is in this tier.
    pub fn contains(&self, rank: u32, ranked: u32) -> bool {
        rank >= 1
            && rank <= ranked
            && match self.ranks {
                TierRanks::Range { from, to } => (from..=to).contains(&rank),
                TierRanks::TopPercent { hundredths } => {
                    rank <= top_percent_ranks(hundredths, ranked)
                }
            }
    }

    /// The tier as the API shows it.
    pub fn to_json(&self) -> Value {
        let rewards: Vec<Value> = self.rewards.iter().map(Reward::to_json).collect();
        match self.ranks {
            TierRanks::Range { from, to } => {
                json!({"rank_from": from, "rank_to": to, "rewards": rewards})
            }
            TierRanks::TopPercent { hundredths } => {
                let percent = if hundredths % 100 == 0 {
                    json!(hundredths / 100)
                } else {
                    json!(f64::from(hundredths) / 100.0)
                };
                json!({"top_percent": percent, "rewards": rewards})
            }
        }
    }
}

/// Parses a rule's `tiers` (1 to 50); error paths are relative to the array's holder
/// (`tiers[1].rank_to`).
pub fn tiers_from_json(value: &Value) -> Result<Vec<Tier>, ValidationError> {
    let tiers = value
        .as_array()
        .ok_or_else(|| ValidationError::field("tiers", "expected an array"))?;
    if !(1..=MAX_TIERS).contains(&tiers.len()) {
        return Err(ValidationError::field(
            "tiers",
            format!("expected 1 to {MAX_TIERS} tiers"),
        ));
    }
    tiers
        .iter()
        .enumerate()
        .map(|(i, t)| Tier::from_json(t).map_err(|e| e.at_index(i).within("tiers")))
        .collect()
}

/// The first tier, in list order, that holds final rank `rank` of a window with `ranked` ranked
/// entries (SPEC §7.2: a player receives the rewards of that tier only).
pub fn tier_of(tiers: &[Tier], rank: u32, ranked: u32) -> Option<usize> {
    tiers.iter().position(|t| t.contains(rank, ranked))
}

/// Where a grant came from, as far as its id is concerned (SPEC §7.7: one grant per source, window or
/// step or redemption, player, and index of the reward in its list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSource<'a> {
    RewardRule {
        rule_id: &'a str,
        window_id: &'a str,
    },
    Achievement {
        achievement_id: &'a str,
        step: u32,
    },
    Coupon {
        campaign_id: &'a str,
        redemption_id: &'a str,
    },
}

/// The id of a grant: derived from what was earned, never from when or where it was computed, so the
/// same earning has the same id on every node, every retry and every replay. `g_` and 32 hex digits
/// (the first 128 bits of a SHA-256 over the length-prefixed parts; see [`grant_key`]).
pub fn grant_id(
    tenant_id: &str,
    source: GrantSource<'_>,
    user_id: &str,
    reward_index: usize,
) -> String {
    grant_id_of_key(grant_key(tenant_id, source, user_id, reward_index))
}

/// The grant id (`g_` + 32 hex digits) of a grant key.
pub fn grant_id_of_key(key: [u8; 16]) -> String {
    format!("g_{}", hex::encode(key))
}

/// The key of a grant id; `None` for anything that is not `g_` + 32 hex digits.
pub fn parse_grant_id(grant_id: &str) -> Option<[u8; 16]> {
    let hex = grant_id.strip_prefix("g_")?;
    if hex.len() != 32 {
        return None;
    }
    hex::decode(hex).ok()?.try_into().ok()
}

/// The 128 bits a grant id is made of (what storage keys grants by).
pub fn grant_key(
    tenant_id: &str,
    source: GrantSource<'_>,
    user_id: &str,
    reward_index: usize,
) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    part(b"phoenix-grant-v1");
    part(tenant_id.as_bytes());
    match source {
        GrantSource::RewardRule { rule_id, window_id } => {
            part(b"reward_rule");
            part(rule_id.as_bytes());
            part(window_id.as_bytes());
        }
        GrantSource::Achievement {
            achievement_id,
            step,
        } => {
            part(b"achievement");
            part(achievement_id.as_bytes());
            part(&step.to_le_bytes());
        }
        GrantSource::Coupon {
            campaign_id,
            redemption_id,
        } => {
            part(b"coupon");
            part(campaign_id.as_bytes());
            part(redemption_id.as_bytes());
        }
    }
    part(user_id.as_bytes());
    part(&(reward_index as u64).to_le_bytes());
    let digest = hash.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// One grant of a settlement in 24 bytes: its key, the entry of the standings it goes to (by
/// position), and which reward of which tier. A window of a million grants plans in 24 MB, not in a
/// million strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedSlot {
    pub key: [u8; 16],
    /// Position in the standings handed to [`plan_slots`].
    pub entry: u32,
    pub tier: u16,
    pub reward_index: u16,
}

/// The settlement plan in compact form, in standings order (see [`plan_settlement`] for the rules).
pub fn plan_slots<'a>(
    tenant_id: &str,
    rule_id: &str,
    window_id: &str,
    tiers: &[Tier],
    min_participants: u32,
    ranked: u32,
    standings: impl IntoIterator<Item = (u32, &'a str)>,
) -> Vec<PlannedSlot> {
    if ranked < min_participants {
        return Vec::new();
    }
    let source = GrantSource::RewardRule { rule_id, window_id };
    let mut slots = Vec::new();
    for (entry, (rank, user_id)) in standings.into_iter().enumerate() {
        let Some(tier) = tier_of(tiers, rank, ranked) else {
            continue;
        };
        for reward_index in 0..tiers[tier].rewards.len() {
            slots.push(PlannedSlot {
                key: grant_key(tenant_id, source, user_id, reward_index),
                entry: entry as u32,
                tier: tier as u16,
                reward_index: reward_index as u16,
            });
        }
    }
    slots
}

/// One grant a settlement makes: who, at which final rank, which reward (by its index in the tier).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedGrant {
    pub grant_id: String,
    pub user_id: String,
    pub rank: u32,
    /// The tier (index in the rule's list) the rank fell in.
    pub tier: usize,
    pub reward_index: usize,
    pub reward: Reward,
}

/// What settling a rule over a window's final standings grants (SPEC §7.2): each ranked player gets
/// the rewards of the first tier holding their rank; nothing when fewer than `min_participants` are
/// ranked. `standings` is `(rank, user_id)` of every ranked entry, `ranked` their number. The same
/// inputs always plan the same grants with the same ids.
pub fn plan_settlement<'a>(
    tenant_id: &str,
    rule_id: &str,
    window_id: &str,
    tiers: &[Tier],
    min_participants: u32,
    ranked: u32,
    standings: impl IntoIterator<Item = (u32, &'a str)>,
) -> Vec<PlannedGrant> {
    let standings: Vec<(u32, &str)> = standings.into_iter().collect();
    plan_slots(
        tenant_id,
        rule_id,
        window_id,
        tiers,
        min_participants,
        ranked,
        standings.iter().copied(),
    )
    .into_iter()
    .map(|slot| {
        let (rank, user_id) = standings[slot.entry as usize];
        let (tier, reward_index) = (slot.tier as usize, slot.reward_index as usize);
        PlannedGrant {
            grant_id: grant_id_of_key(slot.key),
            user_id: user_id.to_owned(),
            rank,
            tier,
            reward_index,
            reward: tiers[tier].rewards[reward_index].clone(),
        }
    })
    .collect()
}

/// The highest final rank any tier can reach in a window of `ranked` entries: a settlement only needs
/// the standings down to it.
pub fn deepest_rank(tiers: &[Tier], ranked: u32) -> u32 {
    tiers
        .iter()
        .map(|t| match t.ranks {
            TierRanks::Range { to, .. } => to.min(ranked),
            TierRanks::TopPercent { hundredths } => top_percent_ranks(hundredths, ranked),
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_depend_on_the_earning_only() {
        let rule = |rule_id, window_id| GrantSource::RewardRule { rule_id, window_id };
        let a = grant_id("t", rule("podium", "2026-12-01"), "ann", 0);
        assert_eq!(a, grant_id("t", rule("podium", "2026-12-01"), "ann", 0));
        assert!(a.starts_with("g_") && a.len() == 34, "{a}");
        for other in [
            grant_id("t2", rule("podium", "2026-12-01"), "ann", 0),
            grant_id("t", rule("podium", "2026-12-01~2"), "ann", 0),
            grant_id("t", rule("podium2", "2026-12-01"), "ann", 0),
            grant_id("t", rule("podium", "2026-12-01"), "bob", 0),
            grant_id("t", rule("podium", "2026-12-01"), "ann", 1),
            // Length-prefixed parts: moving a character between parts changes the id.
            grant_id("t", rule("podiu", "m2026-12-01"), "ann", 0),
            grant_id(
                "t",
                GrantSource::Achievement {
                    achievement_id: "podium",
                    step: 0,
                },
                "ann",
                0,
            ),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn a_settlement_plans_the_first_tiers_rewards_for_each_ranked_player() {
        let tiers = tiers_from_json(&json!([
            {"rank_from": 1, "rank_to": 1, "rewards": [{"type":"currency","currency":"gems","amount":500},
                                                       {"type":"badge","badge":"champion"}]},
            {"top_percent": 50, "rewards": [{"type":"item","item":"chest","quantity":1}]}
        ]))
        .unwrap();
        let standings = [(1, "ann"), (2, "bob"), (3, "cat"), (4, "dan")];
        assert_eq!(deepest_rank(&tiers, 4), 2);
        let plan = plan_settlement("t", "r", "w", &tiers, 0, 4, standings);
        let who: Vec<(&str, u32, usize)> = plan
            .iter()
            .map(|g| (g.user_id.as_str(), g.rank, g.reward_index))
            .collect();
        assert_eq!(who, [("ann", 1, 0), ("ann", 1, 1), ("bob", 2, 0)]);
        assert_eq!(
            plan,
            plan_settlement("t", "r", "w", &tiers, 0, 4, standings)
        );
        assert!(plan_settlement("t", "r", "w", &tiers, 5, 4, standings).is_empty());
        assert_eq!(
            plan_settlement("t", "r", "w", &tiers, 4, 4, standings).len(),
            3
        );
    }

    fn err(v: Value) -> String {
        tiers_from_json(&v).unwrap_err().to_string()
    }

    #[test]
    fn the_contracts_example_parses_and_round_trips() {
        let tiers = json!([
            {"rank_from": 1, "rank_to": 1, "rewards": [{"type":"currency","currency":"gems","amount":500},
                                                       {"type":"badge","badge":"weekly-champion"}]},
            {"rank_from": 2, "rank_to": 10, "rewards": [{"type":"item","item":"chest_gold","quantity":1}]},
            {"top_percent": 5, "rewards": [{"type":"coupon","campaign_id":"vip-week"}]},
            {"top_percent": 12.5, "rewards": [{"type":"custom","data":{"skin":"gold"}}]}
        ]);
        let parsed = tiers_from_json(&tiers).unwrap();
        assert_eq!(parsed.len(), 4);
        let back: Vec<Value> = parsed.iter().map(Tier::to_json).collect();
        assert_eq!(Value::Array(back), tiers);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                json!([{"rank_from": 1, "rank_to": 1, "rewards": [{"type":"badge","badge":"b"}]},
                       {"rank_from": 5, "rank_to": 2, "rewards": [{"type":"badge","badge":"b"}]}]),
                "tiers[1].rank_to: must be >= rank_from",
            ),
            (
                json!([{"top_percent": 0, "rewards": [{"type":"badge","badge":"b"}]}]),
                "tiers[0].top_percent: expected a number above 0 and at most 100, with at most two decimals",
            ),
            (
                json!([{"top_percent": 1.005, "rewards": [{"type":"badge","badge":"b"}]}]),
                "tiers[0].top_percent: expected a number above 0 and at most 100, with at most two decimals",
            ),
            (
                json!([{"rank_from": 1, "rank_to": 3, "rewards": [{"type":"currency","currency":"gems","amount":0}]}]),
                "tiers[0].rewards[0].amount: expected a positive integer (at most 9007199254740991)",
            ),
            (
                json!([{"rank_from": 1, "rank_to": 3, "rewards": [{"type":"item","item":"a b","quantity":1}]}]),
                "tiers[0].rewards[0].item: must match ^[A-Za-z0-9_.:-]{1,64}$",
            ),
            (
                json!([{"rank_from": 1, "rank_to": 3, "rewards": [{"type":"gold"}]}]),
                "tiers[0].rewards[0].type: unknown reward type 'gold'; expected one of currency, item, badge, coupon, custom",
            ),
            (
                json!([{"rank_from": 1, "rank_to": 3, "rewards": [{"type":"badge","badge":"b","extra":1}]}]),
                "tiers[0].rewards[0].extra: unknown field",
            ),
            (
                json!([{"rank_from": 1, "rank_to": 3, "rewards": []}]),
                "tiers[0].rewards: expected 1 to 10 rewards",
            ),
            (
                json!([{"rank_from": 1, "top_percent": 5, "rewards": [{"type":"badge","badge":"b"}]}]),
                "tiers[0].top_percent: cannot be combined with rank_from or rank_to",
            ),
            (json!([]), "tiers: expected 1 to 50 tiers"),
            (
                json!([{"rank_from": 1, "rank_to": 1, "rewards": [{"type":"custom","data":{"x": "y".repeat(5000)}}]}]),
                "tiers[0].rewards[0].data: is 5008 bytes as JSON; at most 4096",
            ),
        ];
        for (tiers, expected) in cases {
            assert_eq!(err(tiers), expected);
        }
    }

    #[test]
    fn top_percent_is_exact_and_the_first_matching_tier_wins() {
        assert_eq!(top_percent_ranks(1000, 30), 3, "10% of 30 is 3 ranks");
        assert_eq!(top_percent_ranks(3333, 3), 1, "33.33% of 3 rounds up to 1");
        assert_eq!(top_percent_ranks(10_000, 7), 7);
        assert_eq!(top_percent_ranks(1, 0), 0);
        assert_eq!(
            top_percent_ranks(1, 1),
            1,
            "any share of one entry is that entry"
        );
        let tiers = tiers_from_json(&json!([
            {"rank_from": 1, "rank_to": 1, "rewards": [{"type":"badge","badge":"first"}]},
            {"top_percent": 10, "rewards": [{"type":"badge","badge":"top10"}]},
            {"rank_from": 2, "rank_to": 5, "rewards": [{"type":"badge","badge":"podium"}]}
        ]))
        .unwrap();
        let of = |rank| tier_of(&tiers, rank, 30);
        assert_eq!(of(1), Some(0));
        assert_eq!(of(2), Some(1));
        assert_eq!(of(3), Some(1));
        assert_eq!(of(4), Some(2), "past the top 10% (3 ranks), the next tier");
        assert_eq!(of(6), None);
        assert_eq!(of(31), None, "beyond the ranked entries");
        assert_eq!(
            tier_of(&tiers, 2, 1),
            None,
            "a rank the window does not have"
        );
    }

    #[test]
    fn client_ids_and_names_follow_their_patterns() {
        assert!(is_client_id("weekly-podium_2"));
        assert!(!is_client_id("weekly.podium"));
        assert!(!is_client_id(""));
        assert!(!is_client_id(&"a".repeat(65)));
        assert!(is_name("chest.gold:v2"));
        assert!(!is_name("chest gold"));
    }
}
