//! `kpod plugins`: what was found, what loaded, what did not.

use kpod_core::plugin_host::PluginSet;

/// Prints the plugin listing to stdout.
pub fn run(plugins: &PluginSet) {
    println!(
        "{:<24} {:<10} {:<4} {:<16} FILE",
        "PLUGIN", "VERSION", "ABI", "TRANSPORT"
    );
    for plugin in &plugins.plugins {
        for (i, t) in plugin.transports.iter().enumerate() {
            let shadowed = if plugins.is_shadowed(plugin, &t.name) {
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
    for name in plugins.transport_names() {
        if let Some(p) = plugins.plugin_for(&name) {
            let desc = p
                .transports
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.description.as_str())
                .unwrap_or("");
            println!("  {name:<16} {desc}");
        }
    }
    for s in &plugins.shadowed {
        println!(
            "Shadowed: transport {:?} of {} (using {})",
            s.transport,
            s.path.display(),
            s.winner.display()
        );
    }
    for s in &plugins.skipped {
        println!("Not loaded: {}", s.message());
    }
    let searched: Vec<String> = plugins
        .searched
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    println!("Searched: {}", searched.join(", "));
}
