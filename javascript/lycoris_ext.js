// lycoris-ext: card clicks and the block-weight panel edit <lora:...> tokens in the prompt box.
// Names come from files; they are only ever compared as strings and written into
// textarea values (never into HTML).

(function() {
    // The tags lycoris_ext/tokens.py TOKEN_KINDS lists (tests/test_tokens.py checks they agree).
    var TOKEN = /<(lora|lyco|loractl):((?:"[^"]*"|'[^']*'|[^>])*)>/g;

    function app() {
        return typeof gradioApp === "function" ? gradioApp() : document;
    }

    function promptTextarea(tabname, negative) {
        var id = "#" + tabname + (negative ? "_neg_prompt" : "_prompt");
        return app().querySelector(id + " > label > textarea") || app().querySelector(id + " textarea");
    }

    function notify(textarea) {
        if (typeof updateInput === "function") {
            updateInput(textarea);
        } else {
            textarea.dispatchEvent(new Event("input", {bubbles: true}));
        }
    }

    // Split a token body at colons that are not inside quotes.
    function splitItems(body) {
        var items = [];
        var cur = "";
        var quote = null;
        for (var i = 0; i < body.length; i++) {
            var c = body[i];
            if (quote) {
                if (c === quote) quote = null;
                cur += c;
            } else if (c === '"' || c === "'") {
                if (cur === "") quote = c;
                cur += c;
            } else if (c === ":") {
                items.push(cur);
                cur = "";
            } else {
                cur += c;
            }
        }
        items.push(cur);
        return items;
    }

    function unquote(name) {
        name = name.trim();
        if (name.length >= 2 && (name[0] === '"' || name[0] === "'") && name[name.length - 1] === name[0]) {
            return name.slice(1, -1);
        }
        return name;
    }

    function quoteName(name) {
        if (name.indexOf(":") < 0 && name[0] !== '"' && name[0] !== "'") return name;
        var q = name.indexOf('"') < 0 ? '"' : "'";
        return q + name + q;
    }

    // Every lora/lyco token of `name` in `text`: [{start, end, kind, items}].
    function findTokens(text, name) {
        var out = [];
        var m;
        TOKEN.lastIndex = 0;
        while ((m = TOKEN.exec(text)) !== null) {
            var items = splitItems(m[2]);
            if (unquote(items[0]) === name) {
                out.push({start: m.index, end: m.index + m[0].length, kind: m[1], items: items});
            }
        }
        return out;
    }

    function separator() {
        return (typeof opts === "object" && opts && typeof opts.extra_networks_add_text_separator === "string") ? opts.extra_networks_add_text_separator : " ";
    }

    function defaultWeight() {
        if (typeof opts === "object" && opts) {
            if (opts.lycoris_default_multiplier !== undefined) return opts.lycoris_default_multiplier;
            if (opts.extra_networks_default_multiplier !== undefined) return opts.extra_networks_default_multiplier;
        }
        return 1;
    }

    // Remove text[start:end] (and `after` right behind it) with the separator
    // around it, so "a, <lora:x:1>, b" becomes "a, b" and "a <lora:x:1> b" "a b".
    function removeText(text, start, end, after) {
        var before = text.slice(0, start);
        var rest = text.slice(end);
        if (after && rest.substr(0, after.length) === after) rest = rest.slice(after.length);
        if (/,\s*$/.test(before) && /^\s*,/.test(rest)) {
            before = before.replace(/,\s*$/, "");
        } else if (/\s$/.test(before) && (/^\s/.test(rest) || rest === "")) {
            before = before.replace(/\s+$/, "");
        } else if (/,\s*$/.test(before) && rest === "") {
            before = before.replace(/,\s*$/, "");
        } else if (before === "") {
            rest = rest.replace(/^\s*,?\s*/, "");
        }
        return before + rest;
    }

    function append(text, addition) {
        if (!text || /\s$/.test(text)) return text + addition;
        return text + separator() + addition;
    }

    // Toggle a network in the prompt: remove every token of it (any weights or
    // arguments) or add one. Returns false so the card's click goes no further.
    window.lycorisCardClicked = function(event, tabname, name, token, activation, negative) {
        if (event && event.stopPropagation) event.stopPropagation();
        var textarea = promptTextarea(tabname, false);
        if (!textarea) return false;
        var found = findTokens(textarea.value, name);
        var after = activation ? " " + activation : "";
        if (found.length) {
            var text = textarea.value;
            for (var i = found.length - 1; i >= 0; i--) {
                text = removeText(text, found[i].start, found[i].end, after);
            }
            textarea.value = text;
            if (negative) {
                var neg = promptTextarea(tabname, true);
                if (neg && neg.value.indexOf(negative) >= 0) {
                    var at = neg.value.indexOf(negative);
                    neg.value = removeText(neg.value, at, at + negative.length, "");
                    notify(neg);
                }
            }
        } else {
            textarea.value = append(textarea.value, token.replace("{w}", String(defaultWeight())) + after);
            if (negative) {
                var negArea = promptTextarea(tabname, true);
                if (negArea && negArea.value.indexOf(negative) < 0) {
                    negArea.value = append(negArea.value, negative);
                    notify(negArea);
                }
            }
        }
        notify(textarea);
        return false;
    };

    window.lycorisPromptText = function(tabname) {
        var textarea = promptTextarea(tabname, false);
        return textarea ? textarea.value : "";
    };

    // Write lbw=SPEC into every token of `name` (adding a token when there is none).
    window.lycorisWriteLbw = function(tabname, name, spec) {
        var textarea = promptTextarea(tabname, false);
        if (!textarea || !name) return [];
        var found = findTokens(textarea.value, name);
        var text = textarea.value;
        if (!found.length) {
            textarea.value = append(text, "<lora:" + quoteName(name) + ":" + defaultWeight() + (spec ? ":lbw=" + spec : "") + ">");
        } else {
            for (var i = found.length - 1; i >= 0; i--) {
                var t = found[i];
                var items = t.items.filter(function(item, k) {
                    return k === 0 || !/^\s*(lbw|w)\s*=/.test(item);
                });
                if (spec) items.push("lbw=" + spec);
                text = text.slice(0, t.start) + "<" + t.kind + ":" + items.join(":") + ">" + text.slice(t.end);
            }
            textarea.value = text;
        }
        notify(textarea);
        return [];
    };

    window.lycorisTokens = {find: findTokens, split: splitItems};
})();
