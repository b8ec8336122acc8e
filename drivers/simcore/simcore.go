// Package simcore is what the switcher simulators (drivers/*/*sim) share: a
// bounded record log with subscriptions (the commands received, the routes
// applied), the fault-injection counters, and a TCP server that accepts
// clients, queues their output and tracks them until Close.
//
// The simulators keep their own protocol handling and exported API; simcore
// holds only the logic that was the same in each of them.
package simcore
