package messages

import "time"

// EventType is Normal or Warning, as in Kubernetes.
type EventType string

// Event types.
const (
	EventNormal  EventType = "Normal"
	EventWarning EventType = "Warning"
)

// EventSource is the "From" column users see.
const EventSource = "acmeq"

// Event is a Kubernetes-style event, with Kubernetes' field names so
// scripts written for `kubectl get events -o json` read it.
type Event struct {
	Type           EventType       `json:"type"`
	Reason         string          `json:"reason"`
	Message        string          `json:"message"`
	InvolvedObject ObjectReference `json:"involvedObject"`
	Source         string          `json:"source,omitempty"`
	// Reporter is the worker that recorded the event.
	Reporter       string    `json:"reportingInstance,omitempty"`
	FirstTimestamp time.Time `json:"firstTimestamp"`
	LastTimestamp  time.Time `json:"lastTimestamp"`
	Count          int       `json:"count"`
}

// Event reasons, with the words of cert-manager's documentation.
const (
	// Issuer.
	ReasonACMEAccountRegistered  = "ACMEAccountRegistered"
	ReasonErrRegisterACMEAccount = "ErrRegisterACMEAccount"
	ReasonErrUpdateACMEAccount   = "ErrUpdateACMEAccount"
	ReasonErrInitIssuer          = "ErrInitIssuer"

	// Certificate.
	ReasonIssuing      = "Issuing"
	ReasonGenerated    = "Generated"
	ReasonRequested    = "Requested"
	ReasonIssued       = "Issued"
	ReasonDoesNotExist = "DoesNotExist"
	ReasonFailed       = "Failed"
	ReasonReady        = "Ready"
	// ReasonRevoked: the current certificate was revoked at the CA.
	ReasonRevoked = "Revoked"

	// CertificateRequest.
	ReasonOrderCreated = "OrderCreated"
	ReasonOrderFailed  = "OrderFailed"
	ReasonPending      = "Pending"
	ReasonCertIssued   = "CertificateIssued"

	// Order.
	ReasonCreated    = "Created"
	ReasonOrderValid = "OrderValid"
	ReasonSolved     = "Solved"
	ReasonErrOrder   = "ErrOrder"

	// Challenge.
	ReasonStarted        = "Started"
	ReasonPresented      = "Presented"
	ReasonPresentError   = "PresentError"
	ReasonDomainVerified = "DomainVerified"
	ReasonFailedCheck    = "Failed"
	ReasonCleanUpError   = "CleanUpError"
	ReasonTimedOut       = "TimedOut"

	// Any kind: a message that could not be processed.
	ReasonPoisonMessage = "PoisonMessage"
)
