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

// DeviceGone says whether QEMU's device tree no longer holds the device
// id (qom-list of /machine/peripheral, where devices with an id live).
// QEMU takes a hot-plugged device out of the tree when the guest ejects
// it, and sends EventDeviceDeleted only when the device is finalized,
// which QEMU 7.2 defers (its RCU thread frees the device's memory
// regions in batches): 8-83 ms after the guest's eject, measured with
// QEMU's acpi_pci_* trace events.
func (c *Client) DeviceGone(ctx context.Context, id string) (bool, error) {
	var out []byte
	err := c.run(ctx, "qom-list", func() error {
		var err error
		out, err = c.mon.Run([]byte(`{"execute":"qom-list","arguments":{"path":"/machine/peripheral"}}` + "\n"))
		return err
	})
	if err != nil {
		return false, err
	}
	var r struct {
		Return []struct {
			Name string `json:"name"`
		} `json:"return"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return false, fmt.Errorf("QMP qom-list: %w", err)
	}
	for _, p := range r.Return {
		if p.Name == id {
			return false, nil
		}
	}
	return true, nil
}
