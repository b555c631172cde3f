extension String {
    /// Decodes a NUL-terminated C character buffer (an address `inet_ntop` wrote, an OpenSSL name).
    package init(cBuffer buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
