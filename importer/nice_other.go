//go:build !linux

package importer

// lowerPriority does nothing where thread priorities are not set
// (imagedrop runs on Linux nodes; this keeps the package building
// elsewhere).
func lowerPriority() {}
