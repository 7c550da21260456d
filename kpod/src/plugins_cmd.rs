//! `kpod plugins`: what was found, what loaded, what did not.
//!
//! Each plugin is confirmed by loading it in a `kpod plugins --confirm FILE`
//! process of its own, so one that crashes while loading is listed as failed.

use kpod_core::plugin_host::confirm::{self, Listing};
use kpod_core::plugin_host::PluginSet;
use std::path::Path;
use std::process::Command;

/// Prints the plugin listing to stdout.
pub fn run(plugins: &PluginSet) {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let listing = confirm::confirm_each(plugins, |file| {
        let mut cmd = Command::new(&exe);
        cmd.arg("plugins").arg("--confirm").arg(file);
        cmd
    });
    print_listing(plugins, &listing);
}

/// `kpod plugins --confirm FILE`: loads that one plugin and prints one JSON line.
pub fn confirm(file: &Path) {
    println!("{}", confirm::report(file));
}

fn print_listing(plugins: &PluginSet, listing: &Listing) {
    println!(
        "{:<24} {:<10} {:<4} {:<16} FILE",
        "PLUGIN", "VERSION", "ABI", "TRANSPORT"
    );
    for plugin in &listing.plugins {
        for (i, t) in plugin.transports.iter().enumerate() {
            let shadowed = if listing.is_shadowed(plugin, &t.name) {
                " (shadowed)"
            } else {
                ""
            };
            let (name, version, abi, file) = if i == 0 {
                (
                    plugin.name.as_str(),
                    plugin.version.as_str(),
                    plugin.abi_version.to_string(),
                    plugin.path.display().to_string(),
                )
            } else {
                ("", "", String::new(), String::new())
            };
            println!(
                "{name:<24} {version:<10} {abi:<4} {:<16} {file}",
                format!("{}{shadowed}", t.name)
            );
        }
        if plugin.transports.is_empty() {
            println!(
                "{:<24} {:<10} {:<4} {:<16} {}",
                plugin.name,
                plugin.version,
                plugin.abi_version,
                "-",
                plugin.path.display()
            );
        }
    }
    println!();
    println!("Transports:");
    for name in listing.transport_names() {
        if let Some(p) = listing.plugin_for(&name) {
            let desc = p
                .transports
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.description.as_str())
                .unwrap_or("");
            println!("  {name:<16} {desc}");
        }
    }
    for s in &listing.shadowed {
        println!(
            "Shadowed: transport {:?} of {} (using {})",
            s.transport,
            s.path.display(),
            s.winner.display()
        );
    }
    for s in &listing.skipped {
        println!("Not loaded: {}", s.message());
    }
    for line in &plugins.ignored {
        println!("Ignored: {line}");
    }
    let searched: Vec<String> = plugins
        .searched
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    println!("Searched: {}", searched.join(", "));
}
