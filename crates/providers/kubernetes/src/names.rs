//! Kubernetes names derived from rollout ids and route names.

/// The longest object name Kubernetes accepts (a DNS-1123 subdomain).
pub(crate) const MAX_NAME: usize = 253;

/// The longest label value Kubernetes accepts.
pub(crate) const MAX_LABEL_VALUE: usize = 63;

/// A DNS-1123 name `prefix` + `raw`, at most 253 characters, that is different for
/// different inputs: see [`object_name_within`].
pub(crate) fn object_name(prefix: &str, raw: &str) -> String {
    object_name_within(prefix, raw, MAX_NAME)
}

/// `prefix` + `raw` if that is a DNS-1123 subdomain of at most `max` characters that does not
/// end like the names derived from it (`-owner`, `-log-<n>`, `-inbox-<n>`); otherwise `prefix` +
/// `raw` made lower case, with every other character Kubernetes does not allow turned into `-`,
/// shortened to fit, and a hash of `raw` appended, so that different inputs never get the same
/// name, and no name is another's derived one. With `max` at most 63 the result is also a valid
/// label value.
pub(crate) fn object_name_within(prefix: &str, raw: &str, max: usize) -> String {
    let plain = format!("{prefix}{raw}");
    if plain.len() <= max && is_dns_subdomain(&plain) && !is_derived(&plain) {
        return plain;
    }
    let hash = fnv1a(raw.as_bytes());
    let mut body: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    body.truncate(max.saturating_sub(prefix.len() + 17));
    let body = body.trim_matches('-');
    if body.is_empty() {
        format!("{prefix}{hash:016x}")
    } else {
        format!("{prefix}{body}-{hash:016x}")
    }
}

/// Whether `name` ends like a name derived from another: `<name>-owner`, `<name>-log-<n>`,
/// `<name>-inbox-<n>`.
fn is_derived(name: &str) -> bool {
    let numbered = name.trim_end_matches(|c: char| c.is_ascii_digit());
    name.ends_with("-owner")
        || (numbered.len() < name.len()
            && (numbered.ends_with("-log-") || numbered.ends_with("-inbox-")))
}

/// Whether `name` is a DNS-1123 subdomain: dot-separated parts of `a-z 0-9 -`, each starting
/// and ending with a letter or digit.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|part| {
            let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            part.starts_with(alnum)
                && part.ends_with(alnum)
                && part.chars().all(|c| alnum(c) || c == '-')
        })
}

/// FNV-1a, 64 bit: stable across releases and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
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
        assert_eq!(object_name("cutover-", "web.v2"), "cutover-web.v2");
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

    #[test]
    fn ids_differing_only_in_edge_characters_get_different_names() {
        let names: Vec<String> = ["a", "a-", "a.", "-a", "_a", "a-.b", "a..b", "---"]
            .iter()
            .map(|id| object_name("", id))
            .collect();
        for (i, name) in names.iter().enumerate() {
            assert!(is_dns_subdomain(name), "{name}");
            assert!(!names[..i].contains(name), "{name} twice: {names:?}");
        }
    }

    #[test]
    fn no_name_is_the_derived_name_of_another() {
        for id in ["web-log-0", "web-inbox-12", "web-owner", "x-log-5"] {
            let name = object_name("rollout-", id);
            assert_ne!(name, format!("rollout-{id}"));
            assert!(!is_derived(&name), "{name}");
        }
        for id in ["web-log", "web-logs-0", "log-0x", "owners", "web-inbox-x"] {
            assert_eq!(object_name("rollout-", id), format!("rollout-{id}"));
        }
    }

    #[test]
    fn label_values_fit_in_63_characters() {
        let long = object_name_within("rollout-", &"Checkout".repeat(20), MAX_LABEL_VALUE);
        assert!(long.len() <= MAX_LABEL_VALUE, "{long}");
        assert!(long.starts_with("rollout-checkout"), "{long}");
        assert_eq!(
            object_name_within("rollout-", "web", MAX_LABEL_VALUE),
            "rollout-web"
        );
    }
}
