// KafkaLocalAdmin.java — topics and ACLs for deploy/kafka-local in one Admin client session.
//
// Run with the JDK's single-file source launcher and the broker's jars on the class path:
//
//   java -cp 'CACHE/*' deploy/KafkaLocalAdmin.java CLIENT.properties <COMMANDS
//
// CLIENT.properties is a Java client configuration (bootstrap.servers, security.protocol,
// sasl.jaas.config, ssl.truststore.*): deploy/kafka-local writes one for its admin user.
// Standard input holds one command a line ('#' starts a comment):
//
//   topic NAME PARTITIONS [KEY=VALUE...]    create a topic (one replica) unless it exists
//   acl PRINCIPAL TYPE PATTERN NAME OPERATION
//       allow PRINCIPAL (User:NAME) OPERATION (Read, Write, Describe, Create, Alter, ...) on
//       the resource TYPE (Topic, Group, TransactionalId, Cluster) whose name is NAME
//       (kafka-cluster for Cluster), PATTERN being Literal or Prefixed; from any host
//
// Every topic is created in one CreateTopics request and every ACL in one CreateAcls
// request (kafka-acls.sh would start a JVM for each principal). Exit status 1 on any error.
//
// Copyright the Tally authors. SPDX-License-Identifier: MIT

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaLocalAdmin {
  static <E extends Enum<E>> E parse(Class<E> type, String text) {
    String want = text.replace("_", "").toLowerCase();
    for (E e : type.getEnumConstants()) {
      if (e.name().replace("_", "").toLowerCase().equals(want)) return e;
    }
    throw new IllegalArgumentException("not a " + type.getSimpleName() + ": " + text);
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: KafkaLocalAdmin CLIENT.properties <COMMANDS");
      System.exit(2);
    }
    Properties props = new Properties();
    try (FileInputStream in = new FileInputStream(args[0])) {
      props.load(in);
    }
    List<NewTopic> topics = new ArrayList<>();
    List<AclBinding> acls = new ArrayList<>();
    BufferedReader reader =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = reader.readLine()) != null) {
      line = line.replaceAll("#.*", "").trim();
      if (line.isEmpty()) continue;
      String[] w = line.split("\\s+");
      if (w[0].equals("topic") && w.length >= 3) {
        Map<String, String> configs = new HashMap<>();
        for (int i = 3; i < w.length; i++) {
          String[] kv = w[i].split("=", 2);
          configs.put(kv[0], kv[1]);
        }
        topics.add(
            new NewTopic(w[1], Optional.of(Integer.parseInt(w[2])), Optional.empty())
                .configs(configs));
      } else if (w[0].equals("acl") && w.length == 6) {
        acls.add(
            new AclBinding(
                new ResourcePattern(
                    parse(ResourceType.class, w[2]), w[4], parse(PatternType.class, w[3])),
                new AccessControlEntry(
                    w[1], "*", parse(AclOperation.class, w[5]), AclPermissionType.ALLOW)));
      } else {
        throw new IllegalArgumentException("bad command: " + line);
      }
    }
    try (Admin admin = Admin.create(props)) {
      if (!topics.isEmpty()) {
        for (var e : admin.createTopics(topics).values().entrySet()) {
          try {
            e.getValue().get();
          } catch (ExecutionException ex) {
            if (!(ex.getCause() instanceof TopicExistsException)) throw ex;
          }
        }
        System.err.println("kafka-local: " + topics.size() + " topic(s) in place");
      }
      if (!acls.isEmpty()) {
        admin.createAcls(acls).all().get();
        System.err.println("kafka-local: " + acls.size() + " ACL(s) created");
      }
    }
  }
}
