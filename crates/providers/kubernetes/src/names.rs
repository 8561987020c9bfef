//! Kubernetes names derived from rollout ids and route names.

/// A DNS-1123 name `prefix` + `raw`, at most 253 characters, that is different for
/// different inputs: an input that had to be changed (upper case, characters Kubernetes does not
/// allow, too long) gets a hash of the original appended.
pub(crate) fn object_name(prefix: &str, raw: &str) -> String {
    const MAX: usize = 253;
    let mut name: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let changed = name != raw || prefix.len() + name.len() > MAX;
    if changed {
        let hash = fnv1a(raw.as_bytes());
        name.truncate(MAX - prefix.len() - 17);
        name = format!("{}-{hash:016x}", name.trim_end_matches(['-', '.']));
    }
    let name = format!("{prefix}{}", name.trim_matches(['-', '.']));
    name.trim_end_matches(['-', '.']).to_owned()
}

/// FNV-1a, 64 bit: stable across releases and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept_and_others_are_made_unique() {
        assert_eq!(
            object_name("cutover-", "checkout-42"),
            "cutover-checkout-42"
        );
        let a = object_name("cutover-", "Checkout_42");
        let b = object_name("cutover-", "checkout_42");
        assert_ne!(a, b);
        assert!(a.starts_with("cutover-checkout-42-"), "{a}");
        let long = object_name("cutover-", &"x".repeat(253));
        assert!(long.len() <= 253, "{}", long.len());
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
