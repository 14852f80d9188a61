//! The Prometheus metrics of leader election.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Prometheus metrics of leader election.
#[derive(Debug, Clone, Default)]
pub struct LeaderMetrics {
    is_leader: Family<Vec<(String, String)>, Gauge>,
    acquisitions: Family<Vec<(String, String)>, Counter>,
    holder: Family<Vec<(String, String)>, Gauge>,
}

impl LeaderMetrics {
    /// Creates the metrics and registers them: `etcd_operator_leader_is_leader` (1 while this
    /// replica leads) and `etcd_operator_leader_acquisitions_total`, both labelled by `identity`,
    /// and `etcd_operator_leader_holder{holder}` (1 for the Lease holder this replica last saw,
    /// absent when it saw none), so that every replica's endpoint says who leads.
    pub fn register(registry: &mut Registry) -> Self {
        let m = LeaderMetrics::default();
        registry.register(
            "etcd_operator_leader_is_leader",
            "1 while this replica holds the leader Lease and acts, else 0",
            m.is_leader.clone(),
        );
        registry.register(
            "etcd_operator_leader_acquisitions",
            "Times this replica acquired the leader Lease",
            m.acquisitions.clone(),
        );
        registry.register(
            "etcd_operator_leader_holder",
            "1 for the holder of the leader Lease as this replica last saw it",
            m.holder.clone(),
        );
        m
    }

    /// Sets the holder this replica sees (`None`: nobody, or unknown).
    pub fn set_holder(&self, holder: Option<&str>) {
        let labels = |h: &str| vec![("holder".to_string(), h.to_string())];
        if let Some(h) = holder
            && self.holder.get_or_create(&labels(h)).get() == 1
        {
            return;
        }
        self.holder.clear();
        if let Some(h) = holder {
            self.holder.get_or_create(&labels(h)).set(1);
        }
    }

    /// Sets the gauge of `identity` (1: it leads and acts); counts an acquisition when `leading`.
    /// The elector calls this itself; without leader election the runtime marks its own identity.
    pub fn set_leading(&self, identity: &str, leading: bool) {
        let labels = vec![("identity".to_string(), identity.to_string())];
        self.is_leader
            .get_or_create(&labels)
            .set(i64::from(leading));
        if leading {
            self.acquisitions.get_or_create(&labels).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_show_the_leading_identity() {
        let mut registry = Registry::default();
        let m = LeaderMetrics::register(&mut registry);
        m.set_leading("pod-1", true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("etcd_operator_leader_is_leader{identity=\"pod-1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("etcd_operator_leader_acquisitions_total{identity=\"pod-1\"} 1"),
            "{text}"
        );
        m.set_holder(Some("pod-1"));
        m.set_holder(Some("pod-2"));
        m.set_leading("pod-1", false);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("etcd_operator_leader_is_leader{identity=\"pod-1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("etcd_operator_leader_holder{holder=\"pod-2\"} 1"),
            "{text}"
        );
        assert!(!text.contains("holder=\"pod-1\""), "{text}");
    }
}
