import CUnderstudyShims
import Foundation
import UnderstudySystem

/// An OpenSSL SSL_CTX restricted to TLS 1.3 with mandatory mutual certificate authentication.
public final class TLSContext: @unchecked Sendable {
    public enum Role: Sendable { case client, server }

    let context: OpaquePointer
    public let role: Role
    public let configuration: TLSConfiguration

    public convenience init(role: Role, configuration: TLSConfiguration) throws(TransportError) {
        try self.init(role: role, configuration: configuration, protocolRange: (TLS1_3_VERSION, TLS1_3_VERSION))
    }

    /// Tests use other ranges to prove that old protocol versions are refused; production code
    /// always goes through the TLS 1.3-only initialiser above.
    package init(role: Role, configuration: TLSConfiguration, protocolRange: (Int32, Int32)) throws(TransportError) {
        ignoreSIGPIPE
        guard let context = SSL_CTX_new(role == .client ? TLS_client_method() : TLS_server_method()) else {
            throw .tls("SSL_CTX_new: \(openSSLErrors())")
        }
        self.context = context
        self.role = role
        self.configuration = configuration
        guard us_ssl_ctx_set_proto_range(context, protocolRange.0, protocolRange.1) == 1 else {
            throw .tls("cannot restrict protocol versions: \(openSSLErrors())")
        }
        us_ssl_ctx_set_stream_modes(context)
        // No session tickets: every connection authenticates with certificates afresh.
        SSL_CTX_set_num_tickets(context, 0)
        try TLSContext.checkPrivateKeyMode(configuration.privateKeyPath)
        guard SSL_CTX_use_certificate_chain_file(context, configuration.certificatePath) == 1 else {
            throw .credentials("cannot load certificate \(configuration.certificatePath): \(openSSLErrors())")
        }
        guard SSL_CTX_use_PrivateKey_file(context, configuration.privateKeyPath, SSL_FILETYPE_PEM) == 1 else {
            throw .credentials("cannot load private key \(configuration.privateKeyPath): \(openSSLErrors())")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .credentials("private key \(configuration.privateKeyPath) does not match certificate \(configuration.certificatePath)")
        }
        guard SSL_CTX_load_verify_locations(context, configuration.caPath, nil) == 1 else {
            throw .credentials("cannot load CA certificate \(configuration.caPath): \(openSSLErrors())")
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
    }

    deinit { SSL_CTX_free(context) }

    private static func checkPrivateKeyMode(_ path: String) throws(TransportError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw .credentials("cannot read private key \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw .credentials("private key \(path) is accessible by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600 \(path)")
        }
    }
}

/// Drains OpenSSL's thread-local error queue into one line.
func openSSLErrors() -> String {
    var parts: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        parts.append(String(cBuffer: buffer))
    }
    return parts.isEmpty ? "no OpenSSL error recorded" : parts.joined(separator: "; ")
}

/// Writing to a socket the peer closed must fail with EPIPE, not kill the process.
private let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()
