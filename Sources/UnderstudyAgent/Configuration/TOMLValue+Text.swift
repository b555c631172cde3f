extension TOMLValue {
    /// The value in TOML syntax, strings quoted and escaped: what a tool that writes a
    /// configuration file (`understudy import`) puts after the `=`.
    public var tomlText: String { render(self) }
}
