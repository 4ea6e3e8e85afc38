//! Which packet filter the OS-firewall commands drive: one nftables table (the
//! default, over netlink, or through the `nft` binary) or portwall's own
//! iptables chains on hosts without nftables. Chosen once per process
//! ([`netfilter::Kernel`]): `--backend` / `PORTWALL_BACKEND` (`auto` detects),
//! and `PORTWALL_NFT_BACKEND=nft` to reach nftables through the `nft` binary
//! instead of netlink. The environment is read here, in the binary, not in a
//! library.

use crate::Global;
use anyhow::Result;
use netfilter::iptables::Backend;
use netfilter::Kernel;
use std::sync::OnceLock;

/// The choice, made at the first [`kernel`] call.
static CHOSEN: OnceLock<Kernel> = OnceLock::new();

/// The kernel path this process drives, chosen at the first call: it is
/// passed down to the host library (`host::PacketFilter` is implemented by
/// [`Kernel`]) and read by the verification commands.
pub fn kernel(global: &Global) -> Result<Kernel> {
    if let Some(k) = CHOSEN.get() {
        return Ok(*k);
    }
    let nft_binary = std::env::var("PORTWALL_NFT_BACKEND").is_ok_and(|v| v == "nft");
    let kernel = match global.backend.as_str() {
        "auto" if nft_binary => {
            if netfilter::nft::works() || !netfilter::iptables::available() {
                Kernel::NftBinary
            } else {
                Kernel::Iptables
            }
        }
        "auto" => Kernel::detect(),
        other => match other.parse::<Backend>().map_err(crate::exit::usage)? {
            Backend::Iptables => Kernel::Iptables,
            Backend::Nftables if nft_binary => Kernel::NftBinary,
            Backend::Nftables => Kernel::detect_nftables(),
        },
    };
    Ok(*CHOSEN.get_or_init(|| kernel))
}
