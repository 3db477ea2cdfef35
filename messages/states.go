package messages

// State is the state of an Order or a Challenge, with ACME's words, as in
// cert-manager's acme.cert-manager.io State.
type State string

// The states. Orders and Challenges start with State "" (not yet synced
// with the CA) and move only through the worker's transition functions.
const (
	// StatePending: the CA waits for challenges to be completed. The Order
	// worker sets it after new-order; the Challenge worker after syncing.
	StatePending State = "pending"
	// StateReady: all authorizations are valid; the Order worker finalizes.
	StateReady State = "ready"
	// StateProcessing: the CA is validating a challenge or issuing the
	// certificate of an order.
	StateProcessing State = "processing"
	// StateValid: final. The challenge passed, or the order's certificate
	// was issued and stored.
	StateValid State = "valid"
	// StateInvalid: final. The CA rejected a challenge or the order; Reason
	// holds the ACME problem.
	StateInvalid State = "invalid"
	// StateExpired: final. The authorization or order expired at the CA.
	StateExpired State = "expired"
	// StateRevoked: final (challenges only).
	StateRevoked State = "revoked"
	// StateDeactivated: final (challenges only).
	StateDeactivated State = "deactivated"
	// StateErrored: final. acmeq gave up on the resource for a reason that
	// is not the CA's verdict (bad spec, deadline passed); Reason says why.
	StateErrored State = "errored"
)

// AllStates lists every state, in lifecycle order.
var AllStates = []State{StatePending, StateReady, StateProcessing, StateValid, StateInvalid, StateExpired, StateRevoked, StateDeactivated, StateErrored}

// Final reports whether no transition leaves s.
func (s State) Final() bool {
	switch s {
	case StateValid, StateInvalid, StateExpired, StateRevoked, StateDeactivated, StateErrored:
		return true
	}
	return false
}

// Failed reports whether s is final and not valid.
func (s State) Failed() bool { return s.Final() && s != StateValid }
