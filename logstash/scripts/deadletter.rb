# Turns an event read from Logstash's dead letter queue into a dead-letter document shaped
# as on the direct path: the refused document escaped in event.original, the reason in
# error.*, into logs-shipper.deadletter-<namespace> (set in @metadata for the output).

def register(params)
end

def filter(event)
  original = event.to_hash
  original.delete("@version")
  namespace = event.get("[data_stream][namespace]") || "default"
  index = event.get("[@metadata][_index]")
  reason = event.get("[@metadata][dead_letter_queue][reason]").to_s
  status = reason[/status: (\d+)/, 1]
  type = reason[/"type"\s*=>\s*"([^"]+)"/, 1]

  original.keys.each { |key| event.remove(key) unless key == "@timestamp" }
  event.set("message", "Elasticsearch refused a document: #{type || "error"}: #{reason}"[0, 2000])
  event.set("[event][kind]", "pipeline_error")
  event.set("[event][dataset]", "shipper.deadletter")
  event.set("[event][original]", LogStash::Json.dump(original))
  event.set("[error][type]", type) if type
  event.set("[error][message]", reason)
  event.set("[error][code]", status) if status
  event.set("[shipper][deadletter][index]", index) if index
  event.set("[data_stream]", {"type" => "logs", "dataset" => "shipper.deadletter", "namespace" => namespace})
  event.set("[@metadata][deadletter_index]", "logs-shipper.deadletter-#{namespace}")
  [event]
end
