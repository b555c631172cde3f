/// A value from a configuration file. Tables are not values: they flatten into dotted keys, which
/// is all the agent's settings need. Dates are left out on purpose (no setting holds one).
public enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])
}
