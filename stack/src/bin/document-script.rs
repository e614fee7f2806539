//! Prints the install document's script as the SSM agent writes it, for `make shellcheck`.

fn main() -> anyhow::Result<()> {
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("stack lives in the workspace");
    let document = certship_stack::document::CommandDocument::install(project)?;
    let step = document
        .shell_step()
        .ok_or_else(|| anyhow::anyhow!("the install document has no single shell step"))?;
    println!("{}", step.script());
    Ok(())
}
