//! Kubernetes quantities (`8Gi`, `500m`), checked the way the apiserver checks them.

/// Whether `s` is a Kubernetes quantity, by the grammar of apimachinery's `ParseQuantity` (what
/// CEL's `isQuantity` calls): an optional sign, digits, an optional `.` and digits (an empty
/// number counts as 0), then nothing, a decimal suffix (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`,
/// `E`), a binary suffix (`Ki` .. `Ei`) or an exponent (`e3`, `E-2`).
pub fn is_quantity(s: &str) -> bool {
    const DECIMAL: [&str; 10] = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E"];
    const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if s.is_empty() {
        return false;
    }
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits(usize::from(matches!(b[0], b'+' | b'-')));
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1);
    }
    let suffix = &s[i..];
    let mut j = i;
    while b.get(j).is_some_and(|c| b"eEinumkKMGTP".contains(c)) {
        j += 1;
    }
    if b.get(j).is_some_and(|c| matches!(c, b'+' | b'-')) {
        j += 1;
    }
    if digits(j) != b.len() {
        return false;
    }
    DECIMAL.contains(&suffix)
        || BINARY.contains(&suffix)
        || (suffix.len() > 1
            && suffix.starts_with(['e', 'E'])
            && suffix[1..].parse::<i64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::is_quantity;

    #[test]
    fn grammar() {
        // As apimachinery parses them, an empty number is 0: "Gi", "." and "-" are quantities.
        for ok in [
            "1", "8Gi", "500m", "1.5", ".5", "5.", "+1Ki", "-1Gi", "1e3", "1E-2", "2E", "100M",
            "Gi", ".", "-",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "lots", "1GB", "1ki", "8gi", "1e+", "1e", "1 Gi", "0x10", "1.2.3", "--1",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
