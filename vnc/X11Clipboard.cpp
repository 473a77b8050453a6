#include "vnc/X11Clipboard.h"

#include <X11/Xatom.h>
#include <X11/extensions/Xfixes.h>

#include "vnc/TextCodec.h"

namespace tether::vnc {

X11Clipboard::X11Clipboard(Display* display, std::size_t max_bytes, Callbacks callbacks)
    : display_(display), max_bytes_(max_bytes), callbacks_(std::move(callbacks)) {}

Result<std::unique_ptr<X11Clipboard>> X11Clipboard::create(Display* display, std::size_t max_bytes,
                                                           Callbacks callbacks) {
  std::unique_ptr<X11Clipboard> clip(new X11Clipboard(display, max_bytes, std::move(callbacks)));
  int error_base = 0;
  if (!XFixesQueryExtension(display, &clip->fixes_event_base_, &error_base)) {
    return make_error(Errc::kUnavailable, "the X server has no XFIXES extension");
  }
  const Window root = DefaultRootWindow(display);
  // Never mapped: it only owns selections and receives conversions.
  clip->window_ = XCreateSimpleWindow(display, root, -10, -10, 1, 1, 0, 0, 0);
  clip->clipboard_ = XInternAtom(display, "CLIPBOARD", False);
  clip->utf8_string_ = XInternAtom(display, "UTF8_STRING", False);
  clip->targets_ = XInternAtom(display, "TARGETS", False);
  clip->text_ = XInternAtom(display, "TEXT", False);
  clip->incr_ = XInternAtom(display, "INCR", False);
  clip->property_ = XInternAtom(display, "TETHER_VNC_SELECTION", False);
  const unsigned long mask = XFixesSetSelectionOwnerNotifyMask;
  XFixesSelectSelectionInput(display, root, clip->clipboard_, mask);
  XFixesSelectSelectionInput(display, root, XA_PRIMARY, mask);
  XFlush(display);
  return clip;
}

X11Clipboard::~X11Clipboard() {
  if (window_ != 0) XDestroyWindow(display_, window_);
  XFlush(display_);
}

bool X11Clipboard::handle_event(XEvent& event) {
  if (event.type == fixes_event_base_ + XFixesSelectionNotify) {
    const auto& e = reinterpret_cast<const XFixesSelectionNotifyEvent&>(event);
    on_owner_change(e.selection, e.owner, e.selection_timestamp);
    return true;
  }
  switch (event.type) {
    case SelectionNotify:
      if (event.xselection.requestor != window_) return false;
      on_converted(event.xselection);
      return true;
    case SelectionRequest:
      if (event.xselectionrequest.owner != window_) return false;
      on_request(event.xselectionrequest);
      return true;
    case SelectionClear:
      if (event.xselectionclear.window != window_) return false;
      // Someone else copied; they serve it now (and we hear of it as an owner change).
      if (XGetSelectionOwner(display_, clipboard_) != window_ &&
          XGetSelectionOwner(display_, XA_PRIMARY) != window_) {
        owning_ = false;
        owned_text_.clear();
      }
      return true;
    default: return false;
  }
}

void X11Clipboard::on_owner_change(Atom selection, Window owner, Time when) {
  if (owner == None || owner == window_ || !callbacks_.x_text) return;
  XConvertSelection(display_, selection, utf8_string_, property_, window_, when);
  XFlush(display_);
}

void X11Clipboard::on_converted(const XSelectionEvent& event) {
  if (event.property == None) {
    // The owner has no UTF-8: ask once more for Latin-1.
    if (event.target == utf8_string_) {
      XConvertSelection(display_, event.selection, XA_STRING, property_, window_, event.time);
      XFlush(display_);
    }
    return;
  }
  Atom type = None;
  int format = 0;
  unsigned long items = 0;
  unsigned long after = 0;
  unsigned char* data = nullptr;
  // Ask for one byte more than the cap, to tell "too large" from "exactly the cap".
  const long longs = static_cast<long>(max_bytes_ / 4 + 1);
  if (XGetWindowProperty(display_, window_, property_, 0, longs, True, AnyPropertyType, &type,
                         &format, &items, &after, &data) != Success) {
    return;
  }
  std::string text;
  bool too_large = false;
  if (type == incr_) {
    too_large = true;  // the owner sends it in pieces: it is large
  } else if (format == 8 && data != nullptr) {
    text.assign(reinterpret_cast<const char*>(data), items);
    too_large = after > 0 || text.size() > max_bytes_;
  }
  if (data != nullptr) XFree(data);
  if (type == incr_ || after > 0) XDeleteProperty(display_, window_, property_);
  if (too_large) {
    if (callbacks_.notice) {
      callbacks_.notice("X clipboard text is larger than " + std::to_string(max_bytes_) +
                        " bytes; not sent to the viewer");
    }
    return;
  }
  if (format != 8) return;
  if (type == XA_STRING) text = latin1_to_utf8(text);
  if (text.empty() || text == last_sent_) return;
  last_sent_ = text;
  callbacks_.x_text(std::move(text));
}

void X11Clipboard::set_viewer_text(std::string utf8) {
  if (utf8.size() > max_bytes_) {
    if (callbacks_.notice) {
      callbacks_.notice("viewer clipboard text of " + std::to_string(utf8.size()) +
                        " bytes is larger than " + std::to_string(max_bytes_) + "; ignored");
    }
    return;
  }
  owned_text_ = std::move(utf8);
  // What we put there is not news to send back to the viewer.
  last_sent_ = owned_text_;
  XSetSelectionOwner(display_, clipboard_, window_, CurrentTime);
  XSetSelectionOwner(display_, XA_PRIMARY, window_, CurrentTime);
  owning_ = XGetSelectionOwner(display_, clipboard_) == window_;
  XFlush(display_);
}

void X11Clipboard::on_request(const XSelectionRequestEvent& request) {
  XSelectionEvent reply{};
  reply.type = SelectionNotify;
  reply.display = display_;
  reply.requestor = request.requestor;
  reply.selection = request.selection;
  reply.target = request.target;
  reply.time = request.time;
  reply.property = None;
  // Obsolete clients name no property: use the target's name (ICCCM 2.2).
  const Atom property = request.property != None ? request.property : request.target;
  if (owning_) {
    if (request.target == targets_) {
      Atom targets[] = {targets_, utf8_string_, XA_STRING, text_};
      XChangeProperty(display_, request.requestor, property, XA_ATOM, 32, PropModeReplace,
                      reinterpret_cast<unsigned char*>(targets), 4);
      reply.property = property;
    } else if (request.target == utf8_string_ || request.target == text_) {
      XChangeProperty(display_, request.requestor, property, utf8_string_, 8, PropModeReplace,
                      reinterpret_cast<const unsigned char*>(owned_text_.data()),
                      static_cast<int>(owned_text_.size()));
      reply.property = property;
    } else if (request.target == XA_STRING) {
      const std::string latin1 = utf8_to_latin1(owned_text_);
      XChangeProperty(display_, request.requestor, property, XA_STRING, 8, PropModeReplace,
                      reinterpret_cast<const unsigned char*>(latin1.data()),
                      static_cast<int>(latin1.size()));
      reply.property = property;
    }
  }
  XSendEvent(display_, request.requestor, False, NoEventMask, reinterpret_cast<XEvent*>(&reply));
  XFlush(display_);
}

}  // namespace tether::vnc
