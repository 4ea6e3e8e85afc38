//! Reading a scraped metrics exposition in the metrics tests of the panel,
//! the edge and the host (`portwall metrics`), included by path where the
//! crate is not the panel's.

use openmetrics_parser::{MetricsExposition, RenderableMetricValue};

/// The values of the samples of family `name` whose labels include `labels`.
pub fn samples<'a, T, V>(
    s: &'a MetricsExposition<T, V>,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a V>
where
    T: Clone,
    V: RenderableMetricValue + Clone,
{
    let Some(family) = s.families.get(name) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .filter(|x| {
            let set = x.get_labelset().expect("a label set");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|x| &x.value)
        .collect()
}
