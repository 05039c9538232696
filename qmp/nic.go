package qmp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
)

// EventDeviceDeleted says QEMU finished removing a device (device_del
// only asks the guest to release it). Its data's "device" is the id.
const EventDeviceDeleted = "DEVICE_DELETED"

// Args are a QMP command's arguments.
type Args map[string]any

// command runs one QMP command with arguments, passing file (when not
// nil) with SCM_RIGHTS on the same write.
func (c *Client) command(ctx context.Context, name string, args Args, file *os.File) error {
	msg := struct {
		Execute   string `json:"execute"`
		Arguments Args   `json:"arguments,omitempty"`
	}{name, args}
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("QMP %s: %w", name, err)
	}
	return c.run(ctx, name, func() error {
		_, err := c.mon.RunWithFile(append(b, '\n'), file)
		return err
	})
}

// GetFD passes f to QEMU, which keeps its own copy under name (for a
// netdev_add's fd=name); the caller may close f afterwards.
func (c *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	if f == nil {
		return fmt.Errorf("QMP getfd %s: no file", name)
	}
	return c.command(ctx, "getfd", Args{"fdname": name}, f)
}

// CloseFD drops an fd GetFD passed that no netdev took.
func (c *Client) CloseFD(ctx context.Context, name string) error {
	return c.command(ctx, "closefd", Args{"fdname": name}, nil)
}

// NetdevAdd creates a host network backend (args: "type", "id", and the
// type's options, typed as QAPI wants them: booleans as bools).
func (c *Client) NetdevAdd(ctx context.Context, args Args) error {
	return c.command(ctx, "netdev_add", args, nil)
}

// NetdevDel removes a backend no device uses any more.
func (c *Client) NetdevDel(ctx context.Context, id string) error {
	return c.command(ctx, "netdev_del", Args{"id": id}, nil)
}

// DeviceAdd hot-plugs a device (args: "driver", "id", "bus" and the
// device's properties).
func (c *Client) DeviceAdd(ctx context.Context, args Args) error {
	return c.command(ctx, "device_add", args, nil)
}

// DeviceDel asks the guest to release a device; EventDeviceDeleted says
// when it is gone.
func (c *Client) DeviceDel(ctx context.Context, id string) error {
	return c.command(ctx, "device_del", Args{"id": id}, nil)
}

// SetLink sets a NIC's (or netdev's) link up or down: the guest sees its
// carrier change.
func (c *Client) SetLink(ctx context.Context, name string, up bool) error {
	return c.command(ctx, "set_link", Args{"name": name, "up": up}, nil)
}

// AnnounceSelf makes QEMU send gratuitous ARP/RARP from every NIC's MAC
// (announce-self with QEMU's default rounds), so switches learn where the
// guest is now.
func (c *Client) AnnounceSelf(ctx context.Context) error {
	return c.command(ctx, "announce-self", Args{"initial": 50, "max": 550, "rounds": 5, "step": 100}, nil)
}
