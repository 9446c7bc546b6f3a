// Passkeys on Jeton's pages, the only script they run: signing in with a passkey (the login page's
// #passkey button, and the second-step page's), and adding one on /account/passkeys (#register).
//
// The server sends a ceremony's options as JSON with its binary values in base64url; the browser's WebAuthn
// API takes and gives ArrayBuffers. This file converts between the two, asks the browser, and posts the
// authenticator's answer back in an ordinary form, so the server answers it as it answers any form: a
// redirect to go on, or the page again with an error. Without WebAuthn in the browser the buttons stay
// hidden.
(function () {
  "use strict";

  function fromBase64url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(base64 + "===".slice((base64.length + 3) % 4));
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let raw = "";
    for (let i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // PublicKeyCredentialCreationOptions from the server's JSON.
  function creationOptions(options) {
    options.challenge = fromBase64url(options.challenge);
    options.user.id = fromBase64url(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = fromBase64url(c.id); });
    return options;
  }

  // PublicKeyCredentialRequestOptions from the server's JSON.
  function requestOptions(options) {
    options.challenge = fromBase64url(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = fromBase64url(c.id); });
    return options;
  }

  // What navigator.credentials.create answered, as the server reads it.
  function registrationJSON(credential) {
    const response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: toBase64url(response.attestationObject),
        clientDataJSON: toBase64url(response.clientDataJSON),
        transports: typeof response.getTransports === "function" ? response.getTransports() : undefined,
      },
      extensions: credential.getClientExtensionResults(),
    };
  }

  // What navigator.credentials.get answered, as the server reads it.
  function assertionJSON(credential) {
    const response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: toBase64url(response.authenticatorData),
        clientDataJSON: toBase64url(response.clientDataJSON),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
      },
      extensions: credential.getClientExtensionResults(),
    };
  }

  // Asks the server for a ceremony's options: {publicKey, state}.
  async function ceremonyOptions(url, fields) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      body: new URLSearchParams(fields),
    });
    const body = await response.json().catch(function () { return {}; });
    if (!response.ok || !body.publicKey) {
      throw new Error(body.error_description || "Passkeys are not available right now.");
    }
    return body;
  }

  // Shows a failure next to the button that started the ceremony.
  function showError(button, error) {
    let text = error && error.message ? error.message : "The passkey could not be used.";
    if (error && error.name === "NotAllowedError") {
      text = "The passkey request was cancelled or timed out.";
    } else if (error && error.name === "InvalidStateError") {
      text = "This authenticator has a passkey for this account already.";
    }
    let shown = document.getElementById("passkey-error");
    if (!shown) {
      shown = document.createElement("p");
      shown.id = "passkey-error";
      shown.className = "error";
      shown.setAttribute("role", "alert");
      button.insertAdjacentElement("afterend", shown);
    }
    shown.textContent = text;
  }

  function postForm(action, fields) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    Object.keys(fields).forEach(function (name) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = fields[name];
      form.append(input);
    });
    document.body.append(form);
    form.submit();
  }

  const supported = typeof window.PublicKeyCredential === "function" && !!navigator.credentials;

  // Sign-in: without a username on the login page; as second factor (data-pending) after the password.
  const signIn = document.getElementById("passkey");
  if (signIn && supported) {
    signIn.hidden = false;
    signIn.addEventListener("click", async function () {
      signIn.disabled = true;
      try {
        const data = signIn.dataset;
        const fields = { csrf: data.csrf };
        if (data.pending) {
          fields.pending = data.pending;
        }
        const options = await ceremonyOptions("/passkey/login/options", fields);
        const credential = await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
        fields.request = data.request;
        fields.state = options.state;
        fields.credential = JSON.stringify(assertionJSON(credential));
        postForm("/passkey/login", fields);
      } catch (error) {
        showError(signIn, error);
        signIn.disabled = false;
      }
    });
  }

  // Registration on /account/passkeys: the answer goes in #register-form, with the name typed there.
  const register = document.getElementById("register");
  if (register && register.form && supported) {
    register.hidden = false;
    register.addEventListener("click", async function () {
      register.disabled = true;
      try {
        const options = await ceremonyOptions("/account/passkeys/options", { csrf: register.dataset.csrf });
        const credential = await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) });
        const form = register.form;
        form.elements.namedItem("state").value = options.state;
        form.elements.namedItem("credential").value = JSON.stringify(registrationJSON(credential));
        form.submit();
      } catch (error) {
        showError(register, error);
        register.disabled = false;
      }
    });
  }
}());
