//! Readers of what Xen prints on its console for a debug key (`xl debug-keys`,
//! then `xl dmesg`): evidence a scenario can hold against the guest's own
//! counters.

/// Active entries past the eight reserved ones (`GNTTAB_NR_RESERVED_ENTRIES`)
/// in Xen's dump of `domid`'s grant table, debug key `g`
/// (`gnttab_usage_print`, xen/common/grant_table.c): one line per entry a
/// peer holds (`[0x<ref>]  <mapping dom> <mfn> <pin> ...`). `None` if the
/// dump has no section for `domid` (the console ring wrapped, or the key was
/// not pressed).
pub fn grant_table_active(dump: &str, domid: u32) -> Option<usize> {
    let head = format!("grant-table for remote d{domid} ");
    let mut it = dump.lines().skip_while(|l| !l.contains(&head));
    it.next()?;
    let n = it
        .take_while(|l| {
            !l.contains("grant-table for remote d") && !l.contains("gnttab_usage_print_all ] done")
        })
        .filter_map(|l| {
            let h = l.split("[0x").nth(1)?.split(']').next()?;
            u32::from_str_radix(h, 16).ok()
        })
        .filter(|r| *r >= 8)
        .count();
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::grant_table_active;

    #[test]
    fn counts_entries_past_the_reserved_ones_of_one_domain() {
        let dump = "(XEN) gnttab_usage_print_all [ key 'g' pressed\n\
            (XEN) grant-table for remote d0 (v1)\n\
            (XEN) [0x009]      1 0x0 0x00000001      1 0x0 0x19\n\
            (XEN) grant-table for remote d3 (v1)\n\
            (XEN)   1 frames (1 max), 0 maptrack frames (1024 max)\n\
            (XEN) [ref] localdom mfn      pin          localdom gmfn     flags\n\
            (XEN) [0x000]      0 0x1 0x00000001      0 0x1 0x19\n\
            (XEN) [0x008]      0 0x2 0x00000001      0 0x2 0x19\n\
            (XEN) [0x1f7]      0 0x3 0x00000001      0 0x3 0x19\n\
            (XEN) gnttab_usage_print_all ] done\n";
        assert_eq!(grant_table_active(dump, 3), Some(2));
        assert_eq!(grant_table_active(dump, 0), Some(1));
        assert_eq!(grant_table_active(dump, 7), None);
        // d1 must not match d13's section.
        assert_eq!(
            grant_table_active("grant-table for remote d13 (v1)\n[0x009] x\n", 1),
            None
        );
    }

    #[test]
    fn a_domain_without_active_entries() {
        let dump = "(XEN) grant-table for remote d5 (v1)\n\
            (XEN)   1 frames (1 max), 0 maptrack frames (1024 max)\n\
            (XEN) no active grant table entries\n\
            (XEN) gnttab_usage_print_all ] done\n";
        assert_eq!(grant_table_active(dump, 5), Some(0));
    }
}
