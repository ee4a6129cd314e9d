//! Picking a cluster member from gossip by [`NodePreference`], pure.
//!
//! The rule is the official clients' (`KurrentDB-Client-Rust kurrentdb/src/grpc.rs`
//! `determine_best_node`): only alive members count, never a `Manager` or a node that is shutting
//! down; members matching the preference come first, ties are broken at random so that clients
//! spread over followers; with no match any other eligible member is taken (best effort), except
//! that a leader preference never settles for a non-leader: a replicator writes, and a follower
//! would only answer "not leader".

use crate::esdb::node::{Endpoint, Gossip, Member, NodeState};

use super::settings::NodePreference;

fn eligible(member: &Member) -> bool {
    member.is_alive
        && member.http_endpoint.is_some()
        && !matches!(member.state, NodeState::ShuttingDown)
        && !matches!(&member.state, NodeState::Other(s) if s.eq_ignore_ascii_case("manager"))
}

fn matches(preference: NodePreference, member: &Member) -> bool {
    match preference {
        NodePreference::Leader => member.state.is_leader(),
        NodePreference::Follower => member.state == NodeState::Follower,
        NodePreference::ReadOnlyReplica => member.is_read_only_replica,
        NodePreference::Random => true,
    }
}

/// The member to connect to, or `None` when gossip names none that fits. `pick` chooses among
/// `n > 0` equally good candidates (randomly in production, fixed in tests).
pub fn select(
    gossip: &Gossip,
    preference: NodePreference,
    pick: impl FnOnce(usize) -> usize,
) -> Option<Endpoint> {
    let eligible: Vec<&Member> = gossip.members.iter().filter(|m| eligible(m)).collect();
    let preferred: Vec<&Member> = eligible
        .iter()
        .copied()
        .filter(|m| matches(preference, m))
        .collect();
    let candidates = if !preferred.is_empty() || preference == NodePreference::Leader {
        preferred
    } else {
        eligible
    };
    if candidates.is_empty() {
        return None;
    }
    let index = pick(candidates.len()).min(candidates.len() - 1);
    candidates[index].http_endpoint.clone()
}

/// A random index below `n`, from the v4 UUID generator already in the tree.
pub fn random_index(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(state: &str, port: u16, alive: bool) -> Member {
        let state = NodeState::parse(state);
        Member {
            instance_id: None,
            is_read_only_replica: state == NodeState::ReadOnlyReplica,
            state,
            is_alive: alive,
            http_endpoint: Some(Endpoint {
                host: "127.0.0.1".into(),
                port,
            }),
            internal_http_endpoint: None,
            last_commit_position: None,
            writer_checkpoint: None,
            chaser_checkpoint: None,
            epoch_position: None,
            election_epoch: None,
            election_epoch_id: None,
            node_priority: None,
            timestamp: None,
        }
    }

    fn cluster() -> Gossip {
        Gossip {
            members: vec![
                member("Manager", 1, true),
                member("Follower", 2, true),
                member("Leader", 3, false),
                member("Leader", 4, true),
                member("Follower", 5, true),
                member("ReadOnlyReplica", 6, true),
                member("ShuttingDown", 7, true),
            ],
            server: None,
        }
    }

    fn port(e: Option<Endpoint>) -> Option<u16> {
        e.map(|e| e.port)
    }

    #[test]
    fn leader_preference_takes_the_alive_leader_only() {
        assert_eq!(
            port(select(&cluster(), NodePreference::Leader, |_| 0)),
            Some(4)
        );
        let mut no_leader = cluster();
        no_leader.members.retain(|m| !m.state.is_leader());
        assert_eq!(select(&no_leader, NodePreference::Leader, |_| 0), None);
    }

    #[test]
    fn follower_and_replica_preferences_with_random_ties() {
        assert_eq!(
            port(select(&cluster(), NodePreference::Follower, |_| 0)),
            Some(2)
        );
        assert_eq!(
            port(select(&cluster(), NodePreference::Follower, |n| n - 1)),
            Some(5)
        );
        assert_eq!(
            port(select(&cluster(), NodePreference::ReadOnlyReplica, |_| 0)),
            Some(6)
        );
        let mut no_replica = cluster();
        no_replica.members.retain(|m| !m.is_read_only_replica);
        // Best effort: any eligible member, never a manager or a dead or stopping node.
        for i in 0..4 {
            let p = port(select(&no_replica, NodePreference::ReadOnlyReplica, |_| i)).unwrap();
            assert!([2, 4, 5].contains(&p), "{p}");
        }
    }

    #[test]
    fn random_never_picks_ineligible_members() {
        for i in 0..10 {
            let p = port(select(&cluster(), NodePreference::Random, |_| i)).unwrap();
            assert!([2, 4, 5, 6].contains(&p), "{p}");
        }
        let empty = Gossip {
            members: vec![],
            server: None,
        };
        assert_eq!(select(&empty, NodePreference::Random, random_index), None);
        assert!(random_index(3) < 3);
    }
}
