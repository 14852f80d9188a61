//! The stored form of a step in flight ([`Intent`]), shared by both runtimes: the Kubernetes
//! runtime keeps it as JSON in an annotation on the `EtcdCluster`, the local runtime as YAML in
//! the cluster's state directory. Member IDs are hexadecimal strings, as etcd and `etcdctl`
//! print them (and because JSON readers lose precision on 64-bit numbers).

use serde::{Deserialize, Serialize};

use super::plan::Intent;

/// An [`Intent`] as stored: `{"step": "addLearner", "ordinal": 1, "peerUrl": ..., "memberId": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum StoredIntent {
    /// See [`Intent::AddLearner`].
    #[serde(rename_all = "camelCase")]
    AddLearner {
        /// The ordinal the learner is for.
        ordinal: u32,
        /// Its peer URL.
        peer_url: String,
        /// Its member ID (hex), once MemberAdd answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member_id: Option<String>,
    },
    /// See [`Intent::RemoveMember`].
    #[serde(rename_all = "camelCase")]
    RemoveMember {
        /// The member's ordinal.
        ordinal: u32,
        /// The member ID being removed (hex).
        member_id: String,
    },
}

impl From<&Intent> for StoredIntent {
    fn from(i: &Intent) -> Self {
        match i {
            Intent::AddLearner {
                ordinal,
                peer_url,
                member_id,
            } => StoredIntent::AddLearner {
                ordinal: *ordinal,
                peer_url: peer_url.clone(),
                member_id: member_id.map(|id| format!("{id:x}")),
            },
            Intent::RemoveMember { ordinal, member_id } => StoredIntent::RemoveMember {
                ordinal: *ordinal,
                member_id: format!("{member_id:x}"),
            },
        }
    }
}

impl StoredIntent {
    /// The intent; `None` when a member ID is not hexadecimal.
    pub fn into_intent(self) -> Option<Intent> {
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        Some(match self {
            StoredIntent::AddLearner {
                ordinal,
                peer_url,
                member_id,
            } => Intent::AddLearner {
                ordinal,
                peer_url,
                member_id: match member_id {
                    Some(s) => Some(hex(&s)?),
                    None => None,
                },
            },
            StoredIntent::RemoveMember { ordinal, member_id } => Intent::RemoveMember {
                ordinal,
                member_id: hex(&member_id)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_through_json_with_hex_ids() {
        for i in [
            Intent::AddLearner {
                ordinal: 2,
                peer_url: "http://127.0.0.1:1".into(),
                member_id: None,
            },
            Intent::AddLearner {
                ordinal: 2,
                peer_url: "http://127.0.0.1:1".into(),
                member_id: Some(0xdead_beef_0000_0001),
            },
            Intent::RemoveMember {
                ordinal: 1,
                member_id: u64::MAX,
            },
        ] {
            let text = serde_json::to_string(&StoredIntent::from(&i)).expect("json");
            let back: StoredIntent = serde_json::from_str(&text).expect("parse");
            assert_eq!(back.into_intent(), Some(i));
        }
        let text = r#"{"step":"removeMember","ordinal":1,"memberId":"ff"}"#;
        let stored: StoredIntent = serde_json::from_str(text).expect("parse");
        assert_eq!(
            stored.into_intent(),
            Some(Intent::RemoveMember {
                ordinal: 1,
                member_id: 0xff
            })
        );
        let bad: StoredIntent =
            serde_json::from_str(r#"{"step":"removeMember","ordinal":1,"memberId":"zz"}"#)
                .expect("parse");
        assert_eq!(bad.into_intent(), None);
    }
}
