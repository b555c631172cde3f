/// What `understudy status` shows: the node's role and that role's status. As JSON it is one
/// flat object, `role` (`primary`, `backup` or `starting`) beside the role's own fields.
public enum AgentStatus: Sendable, Equatable {
    /// The node runs the VM (booted, activated or switched over to it).
    case primary(PrimaryStatus)
    /// The node keeps the replica and may take over.
    case backup(BackupStatus)
    /// Between roles: starting, or stopping.
    case starting(StartingStatus)

    public enum Role: String, Sendable, Codable {
        case primary, backup, starting
    }

    public var role: Role {
        switch self {
        case .primary: .primary
        case .backup: .backup
        case .starting: .starting
        }
    }

    public var vm: String {
        switch self {
        case .primary(let status): status.vm
        case .backup(let status): status.vm
        case .starting(let status): status.vm
        }
    }

    /// The role's phase as shown (its `state` field).
    public var state: String {
        switch self {
        case .primary(let status): status.state.rawValue
        case .backup(let status): status.state.rawValue
        case .starting(let status): status.state
        }
    }

    public var detail: String? {
        get {
            switch self {
            case .primary(let status): status.detail
            case .backup(let status): status.detail
            case .starting(let status): status.detail
            }
        }
        set {
            switch self {
            case .primary(var status):
                status.detail = newValue
                self = .primary(status)
            case .backup(var status):
                status.detail = newValue
                self = .backup(status)
            case .starting(var status):
                status.detail = newValue
                self = .starting(status)
            }
        }
    }

    /// The status of a node running the VM (nil in other roles).
    public var primary: PrimaryStatus? {
        guard case .primary(let status) = self else { return nil }
        return status
    }

    /// The status of a backup (nil in other roles).
    public var backup: BackupStatus? {
        guard case .backup(let status) = self else { return nil }
        return status
    }
}

extension AgentStatus: Codable {
    private enum CodingKeys: String, CodingKey {
        case role
    }

    public init(from decoder: any Decoder) throws {
        switch try decoder.container(keyedBy: CodingKeys.self).decode(Role.self, forKey: .role) {
        case .primary: self = .primary(try PrimaryStatus(from: decoder))
        case .backup: self = .backup(try BackupStatus(from: decoder))
        case .starting: self = .starting(try StartingStatus(from: decoder))
        }
    }

    /// The role's fields and `role` in one object (the shape scripts read).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(role, forKey: .role)
        switch self {
        case .primary(let status): try status.encode(to: encoder)
        case .backup(let status): try status.encode(to: encoder)
        case .starting(let status): try status.encode(to: encoder)
        }
    }
}
